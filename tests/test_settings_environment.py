"""Settings as `chatkit_site.settings` builds them from an environment (see settings_probe)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.settings_probe import settings_from

REPO = Path(__file__).resolve().parent.parent


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


@pytest.mark.parametrize(
    ("value", "header"), [("", None), ("false", None), ("true", ["HTTP_X_FORWARDED_PROTO", "https"])]
)
def test_x_forwarded_proto_is_trusted_only_when_the_deployment_says_so(value, header):
    assert settings_from({"TRUST_X_FORWARDED_PROTO": value}, "SECURE_PROXY_SSL_HEADER") == {
        "SECURE_PROXY_SSL_HEADER": header
    }


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


# What a developer's .env or shell might hold: the test settings must not care.
DEVELOPER_ENVIRONMENT = {
    "DJANGO_DEBUG": "true",
    "DJANGO_ALLOWED_HOSTS": "dev.example",
    "CHATKIT_MODE": "self_hosted",
    "CHATKIT_WORKFLOW_ID": "wf_mine",
    "OPENAI_API_KEY": "sk-mine",
    "SES_FROM_EMAIL": "me@dev.example",
    "SES_TO_EMAIL": "me@dev.example",
    "TRANSCRIPT_API_TOKEN": "mine",
    "RATE_LIMIT_SESSIONS_PER_IP": "1/day",
    "TIME_ZONE": "Europe/Paris",
    "TRY_IT_PAGE_ENABLED": "false",
    "REDIS_URL": "redis://127.0.0.1:6379/9",
}


def test_the_test_settings_are_the_same_whatever_the_developer_has_set():
    mine = settings_from({**example_variables(), **DEVELOPER_ENVIRONMENT}, module="tests.settings")
    clean = settings_from({}, module="tests.settings")

    # The test database's file name carries the process id.
    for built in (mine, clean):
        built.pop("DATABASES")
    assert mine == clean
    assert (clean["DEBUG"], clean["CHATKIT_MODE"], clean["EMAIL_BACKEND"]) == (
        False,
        "managed",
        "django.core.mail.backends.console.EmailBackend",
    )


def test_the_test_settings_take_the_sdks_variables_away():
    probe = (
        "import os, tests.settings; print(sorted(n for n in os.environ if n.startswith(('AWS_', 'OPENAI_'))))"
    )
    environment = {
        "PATH": os.environ["PATH"],
        "AWS_ENDPOINT_URL_SES": "http://127.0.0.1:4566",
        "AWS_PROFILE": "mine",
        "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
        "OPENAI_ORG_ID": "org-mine",
    }

    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=environment, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"


def manage(tmp_path, *args, env_file_text, **environment):
    env_file = tmp_path / "local.env"
    env_file.write_text(env_file_text)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "ENV_FILE": str(env_file), **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def the_readme_env(tmp_path) -> str:
    """.env.example copied, with the values the README names filled in."""
    text = (REPO / ".env.example").read_text()
    for name, value in (("OPENAI_API_KEY", "sk-mine"), ("SES_TO_EMAIL", "me@dev.example")):
        text = text.replace(f"\n{name}=\n", f"\n{name}={value}\n")
    return text + f"DATABASE_URL=sqlite:///{tmp_path / 'db.sqlite3'}\n"


def test_manage_py_reads_the_env_file(tmp_path):
    result = manage(tmp_path, "resend_transcript", "--help", env_file_text=the_readme_env(tmp_path))

    assert result.returncode == 0, result.stderr
    assert "Mail recorded transcripts again" in result.stdout


def test_env_file_values_are_taken_as_written_and_the_environment_wins(tmp_path):
    printed = manage(
        tmp_path,
        "shell",
        "-c",
        "import os; from django.conf import settings; "
        "print(settings.TRANSCRIPT_API_TOKEN, settings.TIME_ZONE, 'OPENAI_BASE_URL' in os.environ)",
        env_file_text=the_readme_env(tmp_path) + "TRANSCRIPT_API_TOKEN=pa#ss$x\nTIME_ZONE=Europe/Paris\n",
        TIME_ZONE="Asia/Tokyo",
    )

    assert printed.returncode == 0, printed.stderr
    # The example's empty OPENAI_BASE_URL= stays out of the environment, where the OpenAI SDK
    # would take it for its base URL.
    assert printed.stdout.splitlines()[-1].split() == ["pa#ss$x", "Asia/Tokyo", "False"]


def test_without_an_env_file_a_production_setting_is_required(tmp_path):
    result = manage(tmp_path, "resend_transcript", "--help", env_file_text="")

    assert result.returncode == 1
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


# --- the time budget: every wait on the database is a fifth of it ---------------------------


def database_options(**environment: str) -> dict:
    return settings_from(environment, "DATABASES")["DATABASES"]["default"]["OPTIONS"]


def test_postgresql_connections_time_out_within_the_budget():
    default = database_options(DATABASE_URL="postgres://chatkit@db.example:5432/chatkit")
    shorter = database_options(
        DATABASE_URL="postgres://chatkit@db.example:5432/chatkit", REQUEST_TIME_BUDGET_SECONDS="10"
    )

    assert (default["connect_timeout"], default["options"], default["pool"]["timeout"]) == (
        5,
        "-c statement_timeout=5000",
        5.0,
    )
    assert (shorter["connect_timeout"], shorter["options"], shorter["pool"]["timeout"]) == (
        2,
        "-c statement_timeout=2000",
        2.0,
    )


def test_what_the_database_url_says_wins():
    options = database_options(
        DATABASE_URL="postgres://chatkit@db.example:5432/chatkit?connect_timeout=30"
        "&options=-c%20statement_timeout%3D0%20-c%20search_path%3Dleads"
    )

    assert options["connect_timeout"] == 30
    # PostgreSQL takes the last value given.
    assert options["options"] == "-c statement_timeout=5000 -c statement_timeout=0 -c search_path=leads"


def test_no_server_options_go_to_an_rds_proxy_which_refuses_them():
    options = database_options(
        DATABASE_URL="postgres://chatkit@chatkit.proxy-c0abcdef1234.eu-west-1.rds.amazonaws.com:5432/chatkit"
    )

    assert "options" not in options
    assert options["connect_timeout"] == 5


def test_sqlite_waits_for_a_lock_within_the_budget(tmp_path):
    options = database_options(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", REQUEST_TIME_BUDGET_SECONDS="10"
    )

    assert options["timeout"] == 2.0


def test_a_budget_below_one_second_stops_the_start(tmp_path):
    result = manage(tmp_path, "check", env_file_text="DJANGO_DEBUG=true\nREQUEST_TIME_BUDGET_SECONDS=0\n")

    assert result.returncode == 1
    assert "REQUEST_TIME_BUDGET_SECONDS must be 1 or more, not 0." in result.stderr


# --- PostgreSQL over TLS ------------------------------------------------------------------


def production_database_options(url: str) -> dict:
    return database_options(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="k" * 50, DATABASE_URL=url)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@db.example:5432/chatkit",
        "postgres://u:p@10.0.3.7/chatkit",
        "postgres://u:p@[2001:db8::5]/c",
    ],
)
def test_postgresql_elsewhere_requires_tls(url):
    assert production_database_options(url)["sslmode"] == "require"


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u@127.0.0.1/chatkit",
        "postgres://u@localhost/chatkit",
        "postgres://u@[::1]/c",
        "postgres:///c",
    ],
)
def test_postgresql_on_this_machine_keeps_libpqs_default(url):
    assert "sslmode" not in production_database_options(url)


def test_local_development_keeps_libpqs_default():
    assert "sslmode" not in database_options(DATABASE_URL="postgres://u:p@db.example/chatkit")


def test_an_sslmode_in_database_url_wins():
    options = production_database_options("postgres://u:p@db.example/chatkit?sslmode=verify-full")

    assert options["sslmode"] == "verify-full"
    assert options["connect_timeout"] == 5


def test_public_origins_are_trusted_by_the_admins_csrf_check():
    built = settings_from(
        {"PUBLIC_ORIGINS": "https://www.shop.example"}, "PUBLIC_ORIGINS", "CSRF_TRUSTED_ORIGINS"
    )

    assert built == {
        "PUBLIC_ORIGINS": ["https://www.shop.example"],
        "CSRF_TRUSTED_ORIGINS": ["https://www.shop.example"],
    }
