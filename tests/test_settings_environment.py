"""Settings as `chatkit_site.settings` builds them from an environment, each case in a fresh
interpreter with exactly that environment (nothing inherited from the test run)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
PRINT_SETTINGS = (
    "import json, sys\n"
    "from chatkit_site import settings\n"
    "names = sys.argv[1:] or [name for name in dir(settings) if name.isupper()]\n"
    "print(json.dumps({name: getattr(settings, name) for name in names}, default=repr))\n"
)


def settings_from(environment: dict[str, str], *names: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS, *names],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "DJANGO_DEBUG": "true", **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def example_variables() -> dict[str, str]:
    """The variables .env.example sets, with the values it gives them."""
    variables = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            variables[name] = value
    return variables


@pytest.mark.parametrize(
    ("environment", "mode"),
    [
        ({}, "self_hosted"),
        ({"CHATKIT_WORKFLOW_ID": "wf_site"}, "managed"),
        ({"CHATKIT_WORKFLOW_ID": "wf_site", "CHATKIT_MODE": ""}, "managed"),
        ({"CHATKIT_WORKFLOW_ID": "wf_site", "CHATKIT_MODE": "self_hosted"}, "self_hosted"),
        ({"CHATKIT_MODE": "managed"}, "managed"),
    ],
)
def test_the_old_handlers_environment_stays_managed_and_anything_else_is_self_hosted(environment, mode):
    assert settings_from(environment, "CHATKIT_MODE") == {"CHATKIT_MODE": mode}


def test_every_empty_variable_of_the_example_means_its_default():
    empty = {
        name: "" for name, value in example_variables().items() if value == "" and name != "DJANGO_DEBUG"
    }
    assert {"CHATKIT_SCRIPT_URL", "CHATKIT_MODE", "DJANGO_SECURE_HSTS_SECONDS"} <= set(empty)

    assert settings_from(empty) == settings_from({})


def test_empty_values_of_defaulted_settings_are_their_defaults():
    names = (
        "CHATKIT_SCRIPT_URL",
        "CHATKIT_AGENT",
        "TIME_ZONE",
        "RATE_LIMIT_SESSIONS_PER_IP",
        "VISITOR_COOKIE_NAME",
    )

    blank = settings_from(dict.fromkeys(names, ""), *names)

    assert blank == {
        "CHATKIT_SCRIPT_URL": "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js",
        "CHATKIT_AGENT": "chatkit_api.agent:default_agent",
        "TIME_ZONE": "UTC",
        "RATE_LIMIT_SESSIONS_PER_IP": [30, 3600],
        "VISITOR_COOKIE_NAME": "chatkit_visitor",
    }
