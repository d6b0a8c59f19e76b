"""Settings as a module builds them from exactly one environment, in a fresh interpreter:
nothing is inherited from the test run or the developer's shell."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PRINT_SETTINGS = (
    "import importlib, json, sys\n"
    "settings = importlib.import_module(sys.argv[1])\n"
    "names = sys.argv[2:] or [name for name in dir(settings) if name.isupper()]\n"
    "print(json.dumps({name: getattr(settings, name) for name in names}, default=repr))\n"
)


def python_run(code: str, *args: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`code` run with `args` by a fresh interpreter in the repository, whose environment is
    `environment` and PATH only; what it printed, and its exit status."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_from(
    environment: dict[str, str], *names: str, module: str = "chatkit_site.settings"
) -> dict[str, Any]:
    """`names` (every setting when none is given) of `module`, built from `environment` with
    DJANGO_DEBUG=true unless it says otherwise; values that JSON lacks come as their repr."""
    result = python_run(PRINT_SETTINGS, module, *names, environment={"DJANGO_DEBUG": "true", **environment})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
