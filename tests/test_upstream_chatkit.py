"""The Django store held to openai-chatkit's own contract: the store and server tests that ship
in openai-chatkit's source distribution, run against `DjangoStore` instead of their SQLite one.

The source distribution of the pinned version is fetched with pip when the test runs (nothing
of it is kept in this repository), and its tests run in a pytest of their own, in a directory
where three small files of ours stand in for what they import but do not ship: their store
(ours), their request context (with the visitor id ours reads), and the database set-up.
"""

import os
import re
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIP_DOWNLOAD = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
UPSTREAM_PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]

# Where the Django store differs from the SDK's sample store on purpose, with why.
AWARE_TIMES = "items come back with aware UTC times, which never equal the naive ones saved"
DESELECTED = {
    "test_store.py::TestSqliteStore::test_save_and_load_thread_items": AWARE_TIMES,
    "test_store.py::TestSqliteStore::test_thread_items_isolation_by_user": AWARE_TIMES,
    "test_store.py::TestSqliteStoreCustomIds::test_save_and_load_thread_items": AWARE_TIMES,
    "test_store.py::TestSqliteStoreCustomIds::test_thread_items_isolation_by_user": AWARE_TIMES,
    "test_chatkit_server.py::test_calls_action": AWARE_TIMES,
    "test_chatkit_server.py::test_calls_action_sync": AWARE_TIMES,
    "test_chatkit_server.py::test_retry_after_item": AWARE_TIMES,
    "test_chatkit_server.py::test_add_structured_input_truncates_extra_single_choice_values": (
        "adding an item under an id already stored replaces it (the agents re-add an open workflow "
        "with its new tasks); this test's responder re-adds the unanswered copy"
    ),
}

STORE = '''\
"""The project's Django store, where openai-chatkit's tests expect their SQLite store."""

from chatkit_api.chatkit_store import DjangoStore


class SQLiteStore(DjangoStore):
    def __init__(self, path: str) -> None:
        super().__init__()
        # Some tests build a second store from the first one's path.
        self.db_path = path
'''

REQUEST_CONTEXT = '''\
"""openai-chatkit's test request context, carrying what the Django store reads."""

from dataclasses import dataclass


@dataclass
class RequestContext:
    user_id: str
    run = None
    api_url = "http://localhost/api/chatkit"

    @property
    def visitor_id(self) -> str:
        return self.user_id
'''

CONFTEST = '''\
from pathlib import Path

import pytest

DESELECTED = set(Path(__file__).with_name("deselected.txt").read_text().split())


@pytest.fixture(autouse=True)
def _database(transactional_db):
    """The store's queries run in Django's thread for sync code: committed, then flushed."""


def pytest_collection_modifyitems(config, items):
    # By exact node id: --deselect would also take every test whose name starts the same.
    deselected = [item for item in items if item.nodeid in DESELECTED]
    items[:] = [item for item in items if item.nodeid not in DESELECTED]
    config.hook.pytest_deselected(items=deselected)
'''

SETTINGS = """\
import os

from chatkit_site import env

env.source = {
    "DJANGO_SECRET_KEY": "upstream-tests-signing-key-0123456789abcdefghijklmnopqrstuvwxyz",
    "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
}

from chatkit_site.settings import *  # noqa: E402, F403
from chatkit_site.settings import DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    # Not the main suite's test database, which may be in use at the same time.
    DATABASES["default"]["TEST"] = {"NAME": f"test_chatkit_upstream_{os.getpid()}"}
"""

PYTEST_INI = """\
[pytest]
DJANGO_SETTINGS_MODULE = upstream_settings
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


def upstream_tests(directory: Path) -> Path:
    """openai-chatkit's tests, for the installed version, laid out to run here."""
    pinned = version("openai-chatkit")
    subprocess.run(
        [*PIP_DOWNLOAD, "--dest", str(directory), f"openai-chatkit=={pinned}"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [archive] = directory.glob("openai_chatkit-*.tar.gz")
    root = directory / "upstream"
    with tarfile.open(archive) as source:
        members = [member for member in source.getmembers() if "/tests/" in member.name and member.isfile()]
        for member in members:
            member.name = member.name.split("/", 1)[1]
        source.extractall(root, members=members, filter="data")
    (root / "tests" / "__init__.py").touch()
    (root / "tests" / "_types.py").write_text(REQUEST_CONTEXT)
    (root / "helpers").mkdir()
    (root / "helpers" / "__init__.py").touch()
    (root / "helpers" / "mock_store.py").write_text(STORE)
    (root / "conftest.py").write_text(CONFTEST)
    (root / "deselected.txt").write_text("".join(f"tests/{test}\n" for test in DESELECTED))
    (root / "upstream_settings.py").write_text(SETTINGS)
    (root / "pytest.ini").write_text(PYTEST_INI)
    return root


def test_the_django_store_passes_the_sdks_store_and_server_tests(tmp_path):
    root = upstream_tests(tmp_path)
    result = subprocess.run(
        [*UPSTREAM_PYTEST, "tests/test_store.py", "tests/test_chatkit_server.py"],
        cwd=root,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "PYTHONPATH": f"{root}{os.pathsep}{REPO}",
            "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )

    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    counts = {kind: int(count) for count, kind in re.findall(r"(\d+) (passed|deselected|skipped)", summary)}
    assert counts.get("deselected") == len(DESELECTED), summary
    assert counts.get("passed", 0) >= 60, summary
    assert "skipped" not in counts, summary
