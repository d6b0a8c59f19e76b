"""Threat: a production deployment with insecure Django settings.

`manage.py check --deploy` runs in a subprocess with a production-like environment (nothing
inherited from the test run) and must report nothing, warnings included.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def deploy_check(tmp_path, **overrides):
    env = {
        "PATH": os.environ["PATH"],
        # Not the developer's .env: exactly this environment.
        "ENV_FILE": os.devnull,
        "DJANGO_SETTINGS_MODULE": "chatkit_site.settings",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "api.shop.example",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "OPENAI_API_KEY": "sk-deploy-check",
        "CHATKIT_WORKFLOW_ID": "wf_deploy_check",
        "SES_REGION": "eu-west-1",
        "SES_FROM_EMAIL": "chat@shop.example",
        "SES_TO_EMAIL": "leads@shop.example",
        "TRANSCRIPT_API_TOKEN": secrets.token_urlsafe(32),
        "CORS_ALLOWED_ORIGINS": "https://shop.example,https://www.shop.example",
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = deploy_check(tmp_path)

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "finding"),
    [
        ({"DJANGO_DEBUG": "true"}, "security.W018"),
        ({"DJANGO_SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"DJANGO_SECURE_SSL_REDIRECT": "false"}, "security.W008"),
        ({"DJANGO_SECRET_KEY": "short"}, "security.W009"),
        ({"CORS_ALLOWED_ORIGINS": "shop.example"}, "corsheaders.E013"),
    ],
)
def test_the_check_catches_a_weakened_setting(tmp_path, overrides, finding):
    result = deploy_check(tmp_path, **overrides)

    assert result.returncode != 0
    assert finding in result.stderr
