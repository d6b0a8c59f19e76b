"""The deploy's migrations: CloudFormation's custom resource requests, as CloudFormation sends
them, through the real handler, answered to a loopback server standing in for the pre-signed
ResponseURL (S3)."""

import json
import time
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.db.models.signals import pre_migrate

from chatkit_site import deploy_migrations
from chatkit_site.deploy_migrations import CustomResourceAnswerFailed
from chatkit_site.lambda_handler import ManagementCommandFailed, handler
from tests.lambda_events import (
    STACK_ID,
    LambdaContext,
    cloudformation_custom_resource_event,
)
from tests.loopback import recording_server
from tests.settings_probe import python_run

pytestmark = pytest.mark.django_db

ANSWER_FIELDS = {
    "Status",
    "Reason",
    "PhysicalResourceId",
    "StackId",
    "RequestId",
    "LogicalResourceId",
    "NoEcho",
    "Data",
}


@pytest.fixture
def response_url():
    with recording_server() as server:
        yield server


def the_answer(server) -> dict:
    """The one answer CloudFormation got, checked to be the PUT a pre-signed S3 URL takes."""
    [request] = server.requests
    assert request.method == "PUT"
    assert request.path.startswith("/arn%3Aaws%3Acloudformation%3Aeu-west-1%3A123456789012%3Astack/chatkit/")
    assert "X-Amz-Signature=3f1e" in urlsplit(request.path).query
    assert request.headers["content-type"] == ""
    assert int(request.headers["content-length"]) == len(request.body)
    answer = json.loads(request.body)
    assert set(answer) == ANSWER_FIELDS
    return answer


@pytest.fixture
def migrations_seen():
    """Each migrate run, as Django announces it before migrating."""
    runs = []

    def seen(app_config, **kwargs):
        if app_config.label == "chatkit_api":
            runs.append(app_config.label)

    pre_migrate.connect(seen)
    yield runs
    pre_migrate.disconnect(seen)


@pytest.fixture
def failing_migration():
    """A migration the database refuses, as one that waits for a lock it never gets."""

    def refuse(app_config, **kwargs):
        if app_config.label == "chatkit_api":
            raise DatabaseError("canceling statement due to lock timeout")

    pre_migrate.connect(refuse)
    yield
    pre_migrate.disconnect(refuse)


@pytest.mark.django_db(transaction=True)
def test_create_runs_the_migrations_and_answers_success(response_url):
    call_command("migrate", "sessions", "zero", verbosity=0)
    try:
        event = cloudformation_custom_resource_event(request_type="Create", response_url=response_url.url)

        result = handler(event, LambdaContext(timeout_seconds=900))

        answer = the_answer(response_url)
        assert answer["Status"] == "SUCCESS" == result["Status"]
        assert "Applying sessions.0001_initial... OK" in answer["Reason"]
        assert "django_session" in connection.introspection.table_names()
        assert answer["PhysicalResourceId"] == "DatabaseMigrations"
        assert (answer["StackId"], answer["LogicalResourceId"]) == (STACK_ID, "DatabaseMigrations")
        assert answer["RequestId"] == event["RequestId"]
        assert answer["Reason"].endswith("(log stream 2026/11/27/[$LATEST]2f1c7a9b3e5d4c6f8a0b1c2d3e4f5a6b)")
    finally:
        call_command("migrate", verbosity=0)


def test_update_runs_the_migrations_and_keeps_the_physical_id(response_url, migrations_seen):
    event = cloudformation_custom_resource_event(request_type="Update", response_url=response_url.url)

    handler(event, LambdaContext(timeout_seconds=900))

    answer = the_answer(response_url)
    assert answer["Status"] == "SUCCESS"
    assert "No migrations to apply." in answer["Reason"]
    assert answer["PhysicalResourceId"] == "DatabaseMigrations"
    assert migrations_seen == ["chatkit_api"]


def test_delete_answers_success_and_migrates_nothing(response_url, migrations_seen):
    event = cloudformation_custom_resource_event(request_type="Delete", response_url=response_url.url)

    handler(event, LambdaContext())

    answer = the_answer(response_url)
    assert answer["Status"] == "SUCCESS"
    assert answer["Reason"].startswith("Nothing to undo")
    assert migrations_seen == []


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_failed_migrations_answer_failed_and_fail_the_invocation(
    response_url, failing_migration, request_type
):
    event = cloudformation_custom_resource_event(request_type=request_type, response_url=response_url.url)

    with pytest.raises(ManagementCommandFailed, match="lock timeout"):
        handler(event, LambdaContext(timeout_seconds=900))

    answer = the_answer(response_url)
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("ManagementCommandFailed: manage migrate exited 1: ")
    assert "DatabaseError: canceling statement due to lock timeout" in answer["Reason"]


def test_the_answer_names_no_secret(response_url, settings):
    settings.OPENAI_API_KEY = "sk-proj-deploy-answer-0123456789"

    def leak(app_config, **kwargs):
        if app_config.label == "chatkit_api":
            raise DatabaseError(f"password authentication failed near {settings.OPENAI_API_KEY}")

    pre_migrate.connect(leak)
    try:
        with pytest.raises(ManagementCommandFailed):
            handler(
                cloudformation_custom_resource_event(request_type="Update", response_url=response_url.url),
                None,
            )
    finally:
        pre_migrate.disconnect(leak)

    answer = the_answer(response_url)
    assert settings.OPENAI_API_KEY not in answer["Reason"]
    assert "near [redacted]" in answer["Reason"]


def test_a_request_that_cannot_be_handled_is_still_answered(response_url, migrations_seen):
    event = cloudformation_custom_resource_event(request_type="Update", response_url=response_url.url)
    event["ResourceProperties"] = "not an object"

    with pytest.raises(AttributeError):
        handler(event, None)

    answer = the_answer(response_url)
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("AttributeError: ")
    assert migrations_seen == []


def test_a_rollback_reaching_the_newer_version_answers_success_without_migrating(
    response_url, migrations_seen, monkeypatch
):
    # The deploy of version 7 failed; CloudFormation asks for version 6's migrations again,
    # and version 7 still answers.
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    event = cloudformation_custom_resource_event(
        request_type="Update", response_url=response_url.url, function_version="6", old_function_version="7"
    )

    handler(event, LambdaContext())

    answer = the_answer(response_url)
    assert answer["Status"] == "SUCCESS"
    assert answer["Reason"].startswith("Not migrated: the stack asks for version 6's migrations")
    assert migrations_seen == []


def test_the_version_the_stack_names_migrates(response_url, migrations_seen, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")

    handler(cloudformation_custom_resource_event(request_type="Update", response_url=response_url.url), None)

    assert the_answer(response_url)["Status"] == "SUCCESS"
    assert migrations_seen == ["chatkit_api"]


def test_migrations_still_running_near_the_timeout_are_answered_failed_once(response_url):
    def long_migration(app_config, **kwargs):
        if app_config.label == "chatkit_api":
            time.sleep(1.5)

    # A function with 1.2 s left keeps a quarter of it to answer: the answer goes at 0.9 s.
    context = LambdaContext(timeout_seconds=1.2)
    pre_migrate.connect(long_migration)
    try:
        result = handler(
            cloudformation_custom_resource_event(request_type="Update", response_url=response_url.url),
            context,
        )
    finally:
        pre_migrate.disconnect(long_migration)

    answer = the_answer(response_url)
    assert answer["Status"] == "FAILED" == result["Status"]
    assert answer["Reason"].startswith("migrate was still running 0 s before the function's timeout")


def test_an_answer_that_cannot_be_delivered_is_tried_again_then_fails_the_invocation(response_url):
    response_url.status = 403

    with pytest.raises(CustomResourceAnswerFailed, match="HTTP Error 403"):
        handler(
            cloudformation_custom_resource_event(request_type="Delete", response_url=response_url.url), None
        )

    assert len(response_url.requests) == deploy_migrations.ANSWER_ATTEMPTS


START_AND_HANDLE = """
import json, sys
from chatkit_site import deploy_migrations
try:
    deploy_migrations.handler(json.loads(sys.argv[1]), None)
except Exception as exc:
    print(type(exc).__name__)
"""


@pytest.mark.parametrize(("request_type", "status"), [("Create", "FAILED"), ("Delete", "SUCCESS")])
def test_a_function_that_cannot_start_still_answers_the_deploy(response_url, request_type, status):
    event = cloudformation_custom_resource_event(request_type=request_type, response_url=response_url.url)
    # Not local development, and no signing key: the settings refuse to load.
    started = python_run(
        START_AND_HANDLE,
        json.dumps(event),
        environment={"DATABASE_URL": "sqlite:////tmp/never-used.sqlite3"},
    )

    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "ImproperlyConfigured", started.stderr
    answer = the_answer(response_url)
    assert (answer["Status"], answer["Reason"]) == (
        status,
        "The function could not start (ImproperlyConfigured); its log says why.",
    )
