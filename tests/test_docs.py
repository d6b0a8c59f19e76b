"""The documentation names only what exists: every setting in the table is one the settings
read (and the other way round), every variable that looks like one of the project's is read,
and every `manage.py` command and `make` target it shows is there."""

import re
from pathlib import Path

import pytest
from django.core.management import get_commands

from tests.settings_probe import settings_from

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    REPO / "README.md",
    REPO / "SECURITY.md",
    REPO / ".env.example",
    *sorted((REPO / "docs").glob("*.md")),
]
# Set by Lambda, never by hand.
PLATFORM_VARIABLES = {"AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME"}
# The names the project's own settings use; a documented name with one of these prefixes that
# the settings do not read is a setting that was renamed or removed.
PROJECT_PREFIXES = (
    "ALLOW_",
    "CHATKIT_",
    "CLOUDFRONT_",
    "CORS_",
    "DATABASE_",
    "DJANGO_",
    "IDEMPOTENCY_",
    "OPENAI_",
    "PUBLIC_",
    "RATE_LIMIT_",
    "REQUEST_",
    "SECRETS_",
    "SES_",
    "TRANSCRIPT_",
    "TRY_IT_",
    "VISITOR_COOKIE_",
)
# Read by something else than the settings, each on purpose.
READ_ELSEWHERE = {
    "DJANGO_SETTINGS_MODULE",  # Django itself
    "DJANGO_SUPERUSER_USERNAME",  # createsuperuser --noinput, ensure_superuser
    "DJANGO_SUPERUSER_EMAIL",
    "DJANGO_SUPERUSER_PASSWORD",
}


def variables_read() -> set[str]:
    """What chatkit_site.settings reads, on Lambda and off it (some reads depend on it)."""
    probe = {"AWS_LAMBDA_FUNCTION_NAME": "docs", "ALLOW_SQLITE_ON_LAMBDA": "true"}
    return set(settings_from(probe, "VARIABLES_READ", module="tests.settings_read")["VARIABLES_READ"])


def documented_settings() -> set[str]:
    table = (REPO / "docs" / "settings.md").read_text()
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def test_the_settings_table_and_the_settings_module_name_the_same_variables():
    assert documented_settings() == variables_read()


def test_the_example_env_file_lists_every_setting():
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), flags=re.MULTILINE))

    assert variables_read() - PLATFORM_VARIABLES == listed


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_project_variable_a_document_names_is_read(document):
    read = variables_read() | READ_ELSEWHERE
    named = set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])\b", document.read_text()))

    unknown = {name for name in named if name.startswith(PROJECT_PREFIXES)} - read

    assert not unknown, f"{document.name} names settings nothing reads: {sorted(unknown)}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_command_and_target_a_document_shows_exists(document):
    text = document.read_text()
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))

    commands = set(re.findall(r"manage\.py ([a-z_]+)", text)) | set(re.findall(r'"manage": "([a-z_]+)', text))
    make_targets = set(re.findall(r"`make ([a-z][a-z-]*)", text)) | set(
        re.findall(r"^make ([a-z-]+)", text, re.M)
    )

    assert commands - set(get_commands()) == set()
    assert make_targets - targets == set()


def test_the_commands_a_manage_event_may_run_are_the_ones_the_handler_allows():
    from chatkit_site.lambda_handler import MANAGE_COMMANDS

    text = (REPO / "docs" / "aws.md").read_text()
    section = text.split("## Commands a manage event may run", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))

    assert documented == MANAGE_COMMANDS
