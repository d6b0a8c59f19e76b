import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from chatkit_site.lambda_handler import ManagementCommandFailed, handler

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple 42"


def ensure_superuser(*args: str) -> str:
    out = StringIO()
    call_command("ensure_superuser", *args, stdout=out, stderr=out)
    return out.getvalue()


def signs_in_to_the_admin(client, username: str, password: str) -> bool:
    client.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"})
    return client.get("/admin/").status_code == 200


def test_creates_a_superuser_from_the_environment(monkeypatch, client):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)

    said = ensure_superuser("alice", "--email", "alice@shop.example")

    user = get_user_model().objects.get(username="alice")
    assert (user.email, user.is_staff, user.is_superuser, user.is_active) == (
        "alice@shop.example",
        True,
        True,
        True,
    )
    assert said.strip() == "Superuser 'alice' created."
    assert signs_in_to_the_admin(client, "alice", PASSWORD)


def test_an_existing_user_becomes_a_superuser_with_the_new_password(monkeypatch, client, django_user_model):
    django_user_model.objects.create_user("bob", "bob@shop.example", "old-password-1234", is_active=False)
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)

    said = ensure_superuser("bob", "--password-env", "ADMIN_PASSWORD")

    user = django_user_model.objects.get(username="bob")
    assert (user.email, user.is_staff, user.is_superuser, user.is_active) == (
        "bob@shop.example",
        True,
        True,
        True,
    )
    assert not user.check_password("old-password-1234")
    assert "updated" in said
    assert django_user_model.objects.count() == 1
    assert signs_in_to_the_admin(client, "bob", PASSWORD)


def test_reads_the_password_from_a_file(tmp_path, django_user_model):
    secret = tmp_path / "admin-password"
    secret.write_text(PASSWORD + "\n")

    ensure_superuser("carol", "--password-file", str(secret))

    assert django_user_model.objects.get(username="carol").check_password(PASSWORD)


def test_username_and_email_default_to_createsuperusers_variables(monkeypatch, django_user_model):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "dana")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "dana@shop.example")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)

    ensure_superuser()

    assert django_user_model.objects.get(username="dana").email == "dana@shop.example"


@pytest.mark.parametrize(
    ("args", "environment", "error"),
    [
        (
            ["erin"],
            {},
            "DJANGO_SUPERUSER_PASSWORD is not set: it holds the password (or give --password-file).",
        ),
        (["erin", "--password-env", "NOPE"], {}, "NOPE is not set"),
        (["erin"], {"DJANGO_SUPERUSER_PASSWORD": "  "}, "DJANGO_SUPERUSER_PASSWORD is not set"),
        (
            ["erin", "--password-file", "/no/such/file"],
            {},
            "The password file could not be read: No such file",
        ),
        ([], {"DJANGO_SUPERUSER_PASSWORD": PASSWORD}, "Name the username"),
    ],
)
def test_refuses_without_a_username_or_a_password(monkeypatch, django_user_model, args, environment, error):
    for name in ("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(CommandError, match=error.replace("(", r"\(").replace(")", r"\)")):
        ensure_superuser(*args)

    assert not django_user_model.objects.exists()


def test_password_validators_apply(monkeypatch, settings, django_user_model):
    settings.AUTH_PASSWORD_VALIDATORS = [
        {
            "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
            "OPTIONS": {"min_length": 40},
        }
    ]
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)

    with pytest.raises(CommandError, match="The password was refused: This password is too short"):
        ensure_superuser("frank")

    assert not django_user_model.objects.exists()


def test_runs_as_a_lambda_manage_event_without_saying_the_password(monkeypatch, client, caplog):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)

    result = handler({"manage": ["ensure_superuser", "grace", "--email", "grace@shop.example"]}, None)

    assert result["exit_code"] == 0
    assert PASSWORD not in result["output"] + result["errors"] + caplog.text
    assert signs_in_to_the_admin(client, "grace", PASSWORD)


def test_a_lambda_manage_event_without_a_password_fails_the_invocation(monkeypatch, django_user_model):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)

    with pytest.raises(
        ManagementCommandFailed,
        match=r"manage ensure_superuser exited 1: .*DJANGO_SUPERUSER_PASSWORD is not set",
    ):
        handler({"manage": "ensure_superuser grace"}, None)

    assert not django_user_model.objects.exists()


def test_reads_the_password_from_a_key_of_the_services_secret_as_a_lambda_manage_event(
    secrets_manager, client, caplog
):
    # The secret the service's settings come from, with the first password put beside them.
    arn = secrets_manager.create_secret(
        Name="chatkit-app",
        SecretString=json.dumps({"DJANGO_SECRET_KEY": "k" * 50, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}),
    )["ARN"]

    result = handler({"manage": ["ensure_superuser", "grace", "--password-secret", arn]}, None)

    assert result["exit_code"] == 0
    assert PASSWORD not in result["output"] + result["errors"] + caplog.text
    assert signs_in_to_the_admin(client, "grace", PASSWORD)


def test_reads_a_secret_that_holds_only_the_password(secrets_manager, django_user_model):
    arn = secrets_manager.create_secret(Name="admin-password", SecretString=PASSWORD)["ARN"]

    ensure_superuser("grace", "--password-secret", arn)

    assert django_user_model.objects.get(username="grace").check_password(PASSWORD)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (json.dumps({"OPENAI_API_KEY": "sk-test"}), "holds no password"),
        (None, "could not be read"),
    ],
)
def test_refuses_a_secret_without_a_password(secrets_manager, django_user_model, value, error):
    if value is None:
        arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:missing-AbCdEf"
    else:
        arn = secrets_manager.create_secret(Name="app", SecretString=value)["ARN"]

    with pytest.raises(CommandError, match=error):
        ensure_superuser("grace", "--password-secret", arn)

    assert not django_user_model.objects.exists()
