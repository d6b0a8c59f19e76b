"""Secrets read at run time from Secrets Manager (moto), by the ARNs the environment holds.

At init: the settings, built in a fresh interpreter, read their secrets through real boto3 from
a moto server on loopback (AWS_ENDPOINT_URL_SECRETS_MANAGER), as on Lambda. Rotation: a secret
changed in Secrets Manager is in use after SECRETS_CACHE_SECONDS, or for the database at once
when the server refuses the old credentials.
"""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from django.db import connection
from moto.server import ThreadedMotoServer
from rest_framework.test import APIClient

from chatkit_site import aws_secrets
from chatkit_site.postgresql.base import DatabaseWrapper
from tests.fake_chatkit import API_KEY
from tests.loopback import free_port
from tests.settings_probe import PRINT_SETTINGS, settings_from

REGION = "eu-west-1"
REPO = Path(__file__).resolve().parent.parent
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION}


@pytest.fixture
def secrets_server(aws_credentials) -> Iterator[tuple[str, object]]:
    """A Secrets Manager stand-in on loopback, and a client of it."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, boto3.client("secretsmanager", region_name=REGION, endpoint_url=url)
    finally:
        server.stop()


def create(client, name: str, value: str) -> str:
    # moto's server and its in-process mock share one account: each test's names are its own.
    return client.create_secret(Name=f"{name}-{uuid.uuid4().hex[:8]}", SecretString=value)["ARN"]


def built_with(url: str, environment: dict[str, str], *names: str) -> dict:
    return settings_from({**AWS, "AWS_ENDPOINT_URL_SECRETS_MANAGER": url, **environment}, *names)


def settings_failure(environment: dict[str, str]) -> str:
    """What the settings say when they refuse to load."""
    result = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS, "chatkit_site.settings"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "DJANGO_DEBUG": "true", **AWS, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    return result.stderr


# --- read at init --------------------------------------------------------------------------


def test_secrets_named_by_arn_are_read_at_init(secrets_server):
    url, client = secrets_server
    environment = {
        "DJANGO_SECRET_KEY_SECRET_ARN": create(client, "signing", "k" * 50),
        "OPENAI_API_KEY_SECRET_ARN": create(client, "openai", "sk-from-secrets-manager"),
    }

    built = built_with(url, environment, "SECRET_KEY", "OPENAI_API_KEY", "TRANSCRIPT_API_TOKEN")

    assert built == {
        "SECRET_KEY": "k" * 50,
        "OPENAI_API_KEY": "sk-from-secrets-manager",
        "TRANSCRIPT_API_TOKEN": "",
    }


def test_one_json_secret_gives_each_setting_its_own_key(secrets_server):
    url, client = secrets_server
    arn = create(
        client,
        "chatkit-backend",
        json.dumps(
            {"OPENAI_API_KEY": "sk-json", "TRANSCRIPT_API_TOKEN": "token", "CLOUDFRONT_ORIGIN_SECRET": "edge"}
        ),
    )
    names = ("OPENAI_API_KEY", "TRANSCRIPT_API_TOKEN", "CLOUDFRONT_ORIGIN_SECRET")

    built = built_with(url, {f"{name}_SECRET_ARN": arn for name in names}, *names)

    assert built == {
        "OPENAI_API_KEY": "sk-json",
        "TRANSCRIPT_API_TOKEN": "token",
        "CLOUDFRONT_ORIGIN_SECRET": "edge",
    }


def test_the_rds_secret_completes_database_url(secrets_server):
    url, client = secrets_server
    arn = create(client, "rds!db-1234", json.dumps({"username": "chatkit", "password": "p@ss/word:1"}))

    built = built_with(
        url, {"DATABASE_URL": "postgres://db.example:5432/chatkit", "DATABASE_SECRET_ARN": arn}, "DATABASES"
    )

    database = built["DATABASES"]["default"]
    assert (database["USER"], database["PASSWORD"]) == ("chatkit", "p@ss/word:1")
    assert (database["HOST"], database["PORT"], database["NAME"]) == ("db.example", 5432, "chatkit")
    assert database["ENGINE"] == "chatkit_site.postgresql"


def test_a_secret_with_the_whole_connection_needs_no_database_url(secrets_server):
    url, client = secrets_server
    secret = {"username": "u", "password": "p", "host": "db.example", "port": 5433, "dbname": "leads"}
    arn = create(client, "rotation-secret", json.dumps(secret))

    database = built_with(url, {"DATABASE_SECRET_ARN": arn}, "DATABASES")["DATABASES"]["default"]

    assert (database["HOST"], database["PORT"], database["NAME"]) == ("db.example", 5433, "leads")


def test_an_unreadable_secret_stops_the_start_naming_it(secrets_server):
    url, _ = secrets_server
    missing = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:nothing-here-AbCdEf"

    said = settings_failure({"AWS_ENDPOINT_URL_SECRETS_MANAGER": url, "OPENAI_API_KEY_SECRET_ARN": missing})

    assert "ImproperlyConfigured: OPENAI_API_KEY_SECRET_ARN: Secrets Manager did not give" in said
    assert missing in said


def test_a_secret_and_its_arn_together_are_refused(secrets_server):
    url, client = secrets_server
    arn = create(client, "openai", "sk-1")

    said = settings_failure(
        {"AWS_ENDPOINT_URL_SECRETS_MANAGER": url, "OPENAI_API_KEY": "sk-2", "OPENAI_API_KEY_SECRET_ARN": arn}
    )

    assert "Set OPENAI_API_KEY or OPENAI_API_KEY_SECRET_ARN, not both." in said


def test_no_arn_means_no_call_to_aws():
    assert settings_from({"OPENAI_API_KEY": "sk-plain"}, "OPENAI_API_KEY") == {"OPENAI_API_KEY": "sk-plain"}


# --- rotation ------------------------------------------------------------------------------


def age(arn: str, seconds: float) -> None:
    """As if the secret had been read `seconds` ago."""
    aws_secrets._store.cached[arn].read_at -= seconds


@pytest.mark.django_db
def test_a_rotated_openai_key_is_used_once_the_cache_is_old(fake_chatkit, secrets_manager, settings):
    arn = create(secrets_manager, "openai", "sk-revoked")
    settings.OPENAI_API_KEY = aws_secrets.setting_from_secret("OPENAI_API_KEY", arn, "OPENAI_API_KEY")
    secrets_manager.put_secret_value(SecretId=arn, SecretString=API_KEY)

    # Still within SECRETS_CACHE_SECONDS: the old key, which OpenAI refuses.
    assert APIClient().post("/api/chatkit/session", {}, format="json").status_code == 502
    age(arn, settings.SECRETS_CACHE_SECONDS)
    response = APIClient().post("/api/chatkit/session", {}, format="json")

    assert response.status_code == 200
    assert settings.OPENAI_API_KEY == API_KEY


@pytest.mark.django_db
def test_a_rotated_signing_key_still_knows_the_visitors_cookie(fake_chatkit, secrets_manager, settings):
    arn = create(secrets_manager, "signing", "old-" + "k" * 50)
    settings.SECRET_KEY = aws_secrets.setting_from_secret("SECRET_KEY", arn, "DJANGO_SECRET_KEY")
    browser = APIClient()
    assert browser.post("/api/chatkit/session", {}, format="json").status_code == 200
    secrets_manager.put_secret_value(SecretId=arn, SecretString="new-" + "k" * 50)
    age(arn, settings.SECRETS_CACHE_SECONDS)

    assert browser.post("/api/chatkit/session", {}, format="json").status_code == 200

    assert settings.SECRET_KEY == "new-" + "k" * 50
    assert settings.SECRET_KEY_FALLBACKS[0] == "old-" + "k" * 50
    first, second = (
        request.body["user"] for request in fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")
    )
    assert first == second


@pytest.mark.django_db
def test_a_secret_that_cannot_be_read_again_keeps_its_value(fake_chatkit, secrets_manager, settings, caplog):
    arn = create(secrets_manager, "openai", API_KEY)
    settings.OPENAI_API_KEY = aws_secrets.setting_from_secret("OPENAI_API_KEY", arn, "OPENAI_API_KEY")
    secrets_manager.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    age(arn, settings.SECRETS_CACHE_SECONDS)

    assert APIClient().post("/api/chatkit/session", {}, format="json").status_code == 200

    assert settings.OPENAI_API_KEY == API_KEY
    assert "Kept the secret read before" in caplog.text


# A pool says only that it could not open a connection in time.
POOL = {"pool": {"min_size": 1, "max_size": 2, "timeout": 1}}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the database backend is PostgreSQL's")
@pytest.mark.django_db
@pytest.mark.parametrize("options", [{}, POOL], ids=["connection", "pool"])
def test_credentials_the_database_refuses_are_read_again(secrets_manager, settings, options):
    """The server refuses a role it does not know, as it refuses a rotated password: the
    backend reads the secret again and connects with what it holds now."""
    database = connection.settings_dict
    arn = create(secrets_manager, "rds!db", json.dumps({"username": "rotated_away", "password": "old"}))
    settings.DATABASE_SECRET_ARN = arn
    settings_dict = {**database, "ENGINE": "chatkit_site.postgresql", "OPTIONS": options, "CONN_MAX_AGE": 0}
    settings_dict.update(aws_secrets.database_credentials(arn, settings_dict))
    secrets_manager.put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": database["USER"], "password": "new"})
    )
    age(arn, aws_secrets.FORCED_REFRESH_INTERVAL_SECONDS)
    wrapper = DatabaseWrapper(settings_dict, alias="secret_test")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone() == (database["USER"],)
    finally:
        wrapper.close()
        wrapper.close_pool()
    assert wrapper.settings_dict["USER"] == database["USER"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the database backend is PostgreSQL's")
@pytest.mark.django_db
def test_refused_credentials_that_did_not_change_fail_the_connection(secrets_manager, settings):
    from django.db import OperationalError

    database = connection.settings_dict
    arn = create(secrets_manager, "rds!db", json.dumps({"username": "rotated_away", "password": "old"}))
    settings.DATABASE_SECRET_ARN = arn
    settings_dict = {**database, "ENGINE": "chatkit_site.postgresql", "OPTIONS": {}}
    settings_dict.update(aws_secrets.database_credentials(arn, settings_dict))
    age(arn, aws_secrets.FORCED_REFRESH_INTERVAL_SECONDS)
    wrapper = DatabaseWrapper(settings_dict, alias="secret_test")

    with pytest.raises(OperationalError, match="rotated_away"):
        wrapper.ensure_connection()
