import gzip
import json
import logging
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command, get_commands
from django.utils import timezone

from chatkit_api.models import Transcript, TranscriptStatus
from chatkit_site.lambda_handler import (
    MANAGE_COMMANDS,
    MalformedManageEvent,
    ManageCommandNotAllowed,
    ManagementCommandFailed,
    handler,
    make_http_handler,
)
from tests.fake_chatkit import API_KEY
from tests.lambda_events import (
    LambdaContext,
    alb_event,
    body_of,
    function_url_event,
    http_api_v2_event,
    rest_api_v1_event,
    scheduled_event,
)
from tests.loopback import recording_server

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parent.parent


def set_cookies(response):
    """Every Set-Cookie a response carries, whichever way the event type returns them."""
    if "cookies" in response:
        return response["cookies"]
    if "multiValueHeaders" in response:
        return [
            v
            for k, values in response["multiValueHeaders"].items()
            if k.lower() == "set-cookie"
            for v in values
        ]
    return [v for k, v in response["headers"].items() if k.lower() == "set-cookie"]


def forwarded_users(fake_chatkit):
    return [request.body["user"] for request in fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")]


# --- HTTP events -------------------------------------------------------------------


def test_http_api_event_creates_a_session_and_sets_the_cookie(fake_chatkit, settings):
    response = handler(http_api_v2_event(body={"locale": "es"}), None)

    assert response["statusCode"] == 200
    assert json.loads(response["body"])["client_secret"].startswith("ek_test_secret_")
    [cookie] = response["cookies"]
    assert cookie.startswith(f"{settings.VISITOR_COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    [request] = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")
    assert request.body["workflow"]["state_variables"]["locale"] == "es"


def test_http_api_cookie_comes_back_as_the_same_visitor(fake_chatkit):
    first = handler(http_api_v2_event(), None)
    cookie = first["cookies"][0].split(";")[0]

    handler(http_api_v2_event(cookies=[cookie, "other=1"]), None)

    first_user, second_user = forwarded_users(fake_chatkit)
    assert first_user == second_user


def test_base64_encoded_request_body_is_decoded(fake_chatkit):
    response = handler(http_api_v2_event(body={"locale": "it"}, base64_encoded=True), None)

    assert response["statusCode"] == 200
    [request] = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")
    assert request.body["workflow"]["state_variables"]["locale"] == "it"


def test_http_api_named_stage_is_stripped_and_kept_in_the_cookie_path(fake_chatkit):
    event = http_api_v2_event(path="/prod/api/chatkit/session", stage="prod")

    response = handler(event, None)

    assert response["statusCode"] == 200
    assert "Path=/prod/api/chatkit" in response["cookies"][0]


@pytest.mark.parametrize("multi_value_headers", [True, False])
def test_rest_api_event_with_stage_prefix(fake_chatkit, multi_value_headers):
    event = rest_api_v1_event(stage="prod", multi_value_headers=multi_value_headers)

    response = handler(event, None)

    assert response["statusCode"] == 200
    [cookie] = set_cookies(response)
    assert "Path=/prod/api/chatkit" in cookie
    # REST APIs always get the multi-value form, which keeps every Set-Cookie.
    assert "multiValueHeaders" in response


def test_rest_api_event_reaches_the_transcript_endpoint(fake_chatkit):
    response = handler(rest_api_v1_event(path="/api/chatkit/transcript", body={"threadId": "cthr_1"}), None)

    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"]


def test_function_url_event(fake_chatkit):
    response = handler(function_url_event(body={"pageUrl": "https://shop.example/"}), None)

    assert response["statusCode"] == 200
    assert response["cookies"][0].startswith("chatkit_visitor=")


@pytest.mark.parametrize("multi_value_headers", [True, False])
def test_alb_event(fake_chatkit, multi_value_headers):
    response = handler(alb_event(multi_value_headers=multi_value_headers), None)

    assert response["statusCode"] == 200
    assert len(set_cookies(response)) == 1
    assert json.loads(response["body"])["client_secret"]


def test_unknown_path_is_a_json_404(fake_chatkit):
    response = handler(http_api_v2_event(path="/nope"), None)

    assert response["statusCode"] == 404
    assert json.loads(response["body"]) == {"error": "Not found."}


# --- several cookies in one response: the admin login sets two --------------------

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@shop.example", "pw-for-tests")


def assert_admin_login_keeps_both_cookies(make_event):
    """Log in to the admin through the handler: the reply sets `sessionid` and `csrftoken`.

    `make_event(method, path, body, cookie)` builds the event type under test.
    """
    page = handler(make_event("GET", "/admin/login/", None, ""), None)
    assert page["statusCode"] == 200
    csrf_cookie = next(c for c in set_cookies(page) if c.startswith("csrftoken=")).split(";")[0]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body_of(page).decode()).group(1)
    form = f"csrfmiddlewaretoken={token}&username=admin&password=pw-for-tests&next=/admin/"

    response = handler(make_event("POST", "/admin/login/", form, csrf_cookie), None)

    assert response["statusCode"] == 302
    assert sorted(cookie.split("=")[0] for cookie in set_cookies(response)) == ["csrftoken", "sessionid"]


def test_every_set_cookie_survives_on_http_api(admin_user):
    def make_event(method, path, body, cookie):
        origin = "https://abcdefghij.execute-api.eu-west-1.amazonaws.com"
        headers = {"content-type": FORM, "origin": origin}
        return http_api_v2_event(
            method=method, path=path, body=body, headers=headers, cookies=[cookie] if cookie else None
        )

    assert_admin_login_keeps_both_cookies(make_event)


@pytest.mark.parametrize("multi_value_headers", [True, False])
def test_every_set_cookie_survives_on_rest_api(admin_user, multi_value_headers):
    def make_event(method, path, body, cookie):
        headers = {"Content-Type": FORM, "Origin": "https://abcdefghij.execute-api.eu-west-1.amazonaws.com"}
        if cookie:
            headers["Cookie"] = cookie
        return rest_api_v1_event(
            method=method, path=path, body=body, headers=headers, multi_value_headers=multi_value_headers
        )

    assert_admin_login_keeps_both_cookies(make_event)


@pytest.mark.parametrize("multi_value_headers", [True, False])
def test_every_set_cookie_survives_on_alb(admin_user, multi_value_headers):
    def make_event(method, path, body, cookie):
        headers = {"content-type": FORM, "origin": "https://chat-alb-1334523864.eu-west-1.elb.amazonaws.com"}
        if cookie:
            headers["cookie"] = cookie
        return alb_event(
            method=method, path=path, body=body, headers=headers, multi_value_headers=multi_value_headers
        )

    assert_admin_login_keeps_both_cookies(make_event)


# --- binary responses ---------------------------------------------------------------


@pytest.fixture
def collected_static(tmp_path, settings):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", verbosity=0)
    return settings.STATIC_ROOT


def test_binary_static_file_is_base64_encoded(collected_static):
    http_handler = make_http_handler(WSGIHandler())

    response = http_handler(http_api_v2_event(method="GET", path="/static/admin/img/icon-yes.svg"), None)

    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    assert body_of(response) == (collected_static / "admin/img/icon-yes.svg").read_bytes()


def test_compressed_static_file_is_base64_encoded(collected_static):
    http_handler = make_http_handler(WSGIHandler())
    event = http_api_v2_event(
        method="GET", path="/static/admin/css/base.css", headers={"accept-encoding": "gzip"}
    )

    response = http_handler(event, None)

    assert response["headers"]["content-encoding"] == "gzip"
    assert response["isBase64Encoded"] is True
    assert gzip.decompress(body_of(response)) == (collected_static / "admin/css/base.css").read_bytes()


def test_text_response_is_plain_text(fake_chatkit):
    response = handler(http_api_v2_event(), None)

    assert response["isBase64Encoded"] is False
    assert response["headers"]["content-type"] == "application/json"


# --- client address -----------------------------------------------------------------


def test_records_from_another_source_are_not_taken_for_sns():
    response = handler({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, None)

    assert response["ok"] is False
    assert "Unsupported event" in response["error"]


def _environ_seen_by_django(event):
    """Run the event through the handler's adapter and return the WSGI environ Django got."""
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return [b""]

    make_http_handler(app)(event, None)
    return seen


def test_rest_api_client_ip_is_the_one_api_gateway_saw_not_x_forwarded_for():
    event = rest_api_v1_event(
        source_ip="198.51.100.20", headers={"X-Forwarded-For": "10.9.9.9, 198.51.100.20"}
    )

    assert _environ_seen_by_django(event)["REMOTE_ADDR"] == "198.51.100.20"


def test_rest_api_source_ip_given_as_cidr():
    event = rest_api_v1_event(source_ip="198.51.100.22/32")

    assert _environ_seen_by_django(event)["REMOTE_ADDR"] == "198.51.100.22"


def test_http_api_client_ip_ignores_a_forged_x_forwarded_for():
    event = http_api_v2_event(source_ip="198.51.100.21", headers={"x-forwarded-for": "10.9.9.9"})

    assert _environ_seen_by_django(event)["REMOTE_ADDR"] == "198.51.100.21"


def test_alb_client_ip_is_the_address_the_load_balancer_appended():
    event = alb_event(x_forwarded_for="10.9.9.9, 198.51.100.23")

    assert _environ_seen_by_django(event)["REMOTE_ADDR"] == "198.51.100.23"


# --- logs ---------------------------------------------------------------------------


def test_one_log_line_per_request(fake_chatkit, caplog):
    with caplog.at_level(logging.INFO, logger="chatkit_site.requests"):
        handler(http_api_v2_event(path="/api/chatkit/session"), LambdaContext())

    [record] = [r for r in caplog.records if r.name == "chatkit_site.requests"]
    assert record.getMessage().startswith("POST /api/chatkit/session 200 ")
    assert (record.method, record.path, record.status) == ("POST", "/api/chatkit/session", 200)
    assert record.duration_ms > 0


# Each line the function writes is one CloudWatch event: as JSON, one line per record, with the
# invocation's request id, whatever the record holds.
JSON_LOGS = """
import json, sys
from chatkit_site.lambda_handler import handler
from django.db import DatabaseError
from django.db.models.signals import pre_migrate
from tests.lambda_events import LambdaContext, cloudformation_custom_resource_event, http_api_v2_event

def refuse(app_config, **kwargs):
    if app_config.label == "chatkit_api":
        raise DatabaseError("password authentication failed near " + sys.argv[2])

pre_migrate.connect(refuse)
handler(http_api_v2_event(), LambdaContext(aws_request_id="request-http"))
try:
    handler({"manage": "resend_transcript 424242"}, LambdaContext(aws_request_id="request-manage"))
except Exception:
    pass
try:
    event = cloudformation_custom_resource_event(request_type="Update", response_url=sys.argv[1])
    handler(event, LambdaContext(aws_request_id="request-deploy", timeout_seconds=900))
except Exception:
    pass
handler(["not", "an", "event"], LambdaContext(aws_request_id="request-unknown"))
"""


def _log_lines(fake_chatkit, tmp_path, response_url, extra_environment):
    result = subprocess.run(
        [sys.executable, "-c", JSON_LOGS, response_url, API_KEY],
        cwd=REPO,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SECRET_KEY": "x" * 50,
            "AWS_LAMBDA_FUNCTION_NAME": "chatkit-ChatKitFunction-Ab12Cd34Ef56",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": fake_chatkit.base_url,
            "CHATKIT_WORKFLOW_ID": "wf_test",
            "RATE_LIMIT_SESSIONS_PER_IP": "off",
            **extra_environment,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def test_on_lambda_every_line_is_json_with_the_invocations_request_id(fake_chatkit, tmp_path):
    with recording_server() as cloudformation:
        lines = _log_lines(fake_chatkit, tmp_path, cloudformation.url, {})

    records = [json.loads(line) for line in lines]
    assert all(
        set(record) >= {"timestamp", "level", "logger", "message", "aws_request_id"} for record in records
    )
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", r["timestamp"]) for r in records)
    by_request = {
        request: [record for record in records if record["aws_request_id"] == request]
        for request in ("request-http", "request-manage", "request-deploy", "request-unknown")
    }
    [session] = [r for r in by_request["request-http"] if r["logger"] == "chatkit_site.requests"]
    assert (session["level"], session["method"], session["path"], session["status"]) == (
        "INFO",
        "POST",
        "/api/chatkit/session",
        200,
    )
    assert session["message"].startswith("POST /api/chatkit/session 200 ")
    assert [r["message"] for r in by_request["request-manage"]] == ["manage resend_transcript exited 1"]
    assert by_request["request-unknown"][0]["level"] == "ERROR"
    # The traceback is one line's field, with the secret the error quoted redacted.
    [failure] = [r for r in by_request["request-deploy"] if r["level"] == "ERROR"]
    assert failure["message"] == "The deploy's migrations failed"
    assert failure["exception"].startswith("Traceback (most recent call last):\n")
    assert "ManagementCommandFailed: manage migrate exited 1: DatabaseError" in failure["exception"]
    assert API_KEY not in "\n".join(lines)
    assert "near [redacted]" in failure["exception"]


def test_text_logs_when_asked_for(fake_chatkit, tmp_path):
    with recording_server() as cloudformation:
        lines = _log_lines(fake_chatkit, tmp_path, cloudformation.url, {"LOG_FORMAT": "text"})

    assert lines[0].startswith("POST /api/chatkit/session 200 ")
    assert "Traceback (most recent call last):" in lines
    assert API_KEY not in "\n".join(lines)


# --- non-HTTP events ----------------------------------------------------------------


def test_manage_event_runs_a_management_command():
    result = handler({"manage": "check"}, None)

    assert result["exit_code"] == 0
    assert "System check identified no issues" in result["output"]


def test_manage_event_runs_migrate():
    result = handler({"manage": ["migrate", "--noinput"]}, None)

    assert result["exit_code"] == 0
    assert "No migrations to apply" in result["output"]


# A failed command fails the invocation: Lambda counts the error (and alarms on it), retries an
# asynchronous one, and the invoker reads the command's words in the error message.


def test_manage_event_with_bad_arguments_fails_the_invocation():
    with pytest.raises(ManagementCommandFailed, match="no-such-option"):
        handler({"manage": "migrate --no-such-option"}, None)


def test_manage_event_whose_command_fails_fails_the_invocation():
    with pytest.raises(ManagementCommandFailed, match=r"manage resend_transcript exited 1: .*424242"):
        handler({"manage": ["resend_transcript", "424242"]}, None)


# Only the commands MANAGE_COMMANDS names run: whoever may invoke the function must not get a
# shell, the settings' secrets or a dump of every transcript from it.


@pytest.mark.parametrize(
    "manage",
    [
        "shell -c 'import os; os.remove(\"/tmp/x\")'",
        ["shell"],
        "diffsettings --all",
        ["dumpdata", "chatkit_api"],
        "flush --noinput",
        "no_such_command",
    ],
)
def test_manage_event_naming_a_command_not_on_the_list_is_refused(manage):
    Transcript.objects.create(thread_id="cthr_kept", requested_by="server")

    with pytest.raises(ManageCommandNotAllowed) as refused:
        handler({"manage": manage}, None)

    assert str(refused.value).startswith("manage ")
    assert " is not allowed: a manage event may run admin_sign_in_unlock, check, " in str(refused.value)
    assert Transcript.objects.filter(thread_id="cthr_kept").exists()


@pytest.mark.parametrize(
    ("manage", "option"),
    [
        (["ensure_superuser", "mallory", "--password-env", "AWS_LAMBDA_FUNCTION_NAME"], "--password-env"),
        (["ensure_superuser", "mallory", "--password-file=/var/task/manage.py"], "--password-file"),
        (["ensure_superuser", "mallory", "--password-f", "/var/task/manage.py"], "--password-file"),
        ("resend_transcript --since 2000-01-01 --to mallory@attacker.example", "--to"),
        ("resend_transcript 1 --t=mallory@attacker.example", "--to"),
    ],
)
def test_manage_event_giving_an_option_the_invoker_may_not_use_is_refused(
    manage, option, monkeypatch, django_user_model
):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "chatkit")
    Transcript.objects.create(thread_id="cthr_kept", requested_by="server", status=TranscriptStatus.FAILED)

    with pytest.raises(ManageCommandNotAllowed, match=f" {option} is not allowed in a manage event"):
        handler({"manage": manage}, None)

    assert not django_user_model.objects.exists()
    assert Transcript.objects.get().attempts == 0


def test_a_failed_manage_commands_message_carries_no_secret(settings):
    settings.OPENAI_API_KEY = "sk-" + "s" * 40

    with pytest.raises(ManagementCommandFailed) as failed:
        handler({"manage": ["resend_transcript", "--since", settings.OPENAI_API_KEY]}, None)

    assert "sk-ssss" not in str(failed.value)
    assert "[redacted]" in str(failed.value)


def test_every_command_on_the_list_exists():
    assert set(get_commands()) >= MANAGE_COMMANDS


@pytest.mark.parametrize(
    ("manage", "problem"),
    [
        ("", "No command given"),
        ("   ", "No command given"),
        ([], "No command given"),
        ([""], "No command given"),
        ("migrate 'unclosed", "could not be split into arguments (No closing quotation)"),
        (["migrate", 3], "A value of type list is not a command line"),
        ({"command": "migrate"}, "A value of type dict is not a command line"),
        (42, "A value of type int is not a command line"),
        (None, "A value of type NoneType is not a command line"),
    ],
)
def test_malformed_manage_event_is_a_clear_error(manage, problem):
    with pytest.raises(MalformedManageEvent) as malformed:
        handler({"manage": manage}, None)

    assert problem in str(malformed.value)
    assert '"manage" takes a command line ("migrate --noinput")' in str(malformed.value)


@pytest.mark.parametrize("event", [{"detail-type": "Something"}, {}, [], None, "text", {"Records": []}])
def test_unknown_event_gets_a_clear_error(event, caplog):
    with caplog.at_level(logging.ERROR):
        result = handler(event, None)

    assert result["ok"] is False
    assert "Unsupported event" in result["error"]
    assert "Unsupported Lambda event" in caplog.text


# --- start-up -----------------------------------------------------------------------


def _import_handler(env_overrides):
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SECRET_KEY": "x" * 50,
        "AWS_LAMBDA_FUNCTION_NAME": "chatkit",
        **env_overrides,
    }
    return subprocess.run(
        [sys.executable, "-c", "import chatkit_site.lambda_handler"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_handler_refuses_sqlite_on_lambda():
    result = _import_handler({})

    assert result.returncode != 0
    assert "DATABASE_URL is not set" in result.stderr
    assert "ALLOW_SQLITE_ON_LAMBDA" in result.stderr


def test_handler_starts_with_sqlite_when_explicitly_allowed():
    assert _import_handler({"ALLOW_SQLITE_ON_LAMBDA": "true"}).returncode == 0


def test_handler_starts_with_a_database_url():
    assert _import_handler({"DATABASE_URL": "postgres://u@127.0.0.1:5432/db"}).returncode == 0


def test_scheduled_event_runs_the_retention_purge():
    event = scheduled_event()

    old = Transcript.objects.create(thread_id="cthr_old", requested_by="server")
    Transcript.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=400))
    recent = Transcript.objects.create(thread_id="cthr_recent", requested_by="server")

    result = handler(event, None)

    assert result["exit_code"] == 0
    assert "Deleted 1 transcript(s) older than 365 days." in result["output"]
    assert list(Transcript.objects.values_list("pk", flat=True)) == [recent.pk]


def test_metrics_event_writes_the_transcript_backlog_as_one_emf_line(capsys, monkeypatch, settings):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "chatkit-prod-ChatKitFunction")
    long_ago = timezone.now() - timedelta(minutes=settings.TRANSCRIPT_PENDING_TIMEOUT_MINUTES + 1)
    for thread_id, status, created_at in [
        ("cthr_failed_1", "failed", timezone.now()),
        ("cthr_failed_2", "failed", long_ago),
        ("cthr_stuck", "pending", long_ago),
        # Still within the time a send may take: not stuck yet.
        ("cthr_sending", "pending", timezone.now()),
        ("cthr_sent", "sent", long_ago),
    ]:
        transcript = Transcript.objects.create(thread_id=thread_id, requested_by="server", status=status)
        Transcript.objects.filter(pk=transcript.pk).update(created_at=created_at)

    result = handler({"metrics": "transcripts"}, None)

    assert result == {"TranscriptsFailed": 2, "TranscriptsStuck": 1}
    [line] = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    # What CloudWatch Logs needs to extract the metrics: the directive, and each metric and
    # dimension named in it as a top-level member.
    [directive] = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "ChatKitBackend"
    assert directive["Dimensions"] == [["FunctionName"]]
    assert [metric["Name"] for metric in directive["Metrics"]] == ["TranscriptsFailed", "TranscriptsStuck"]
    assert abs(record["_aws"]["Timestamp"] / 1000 - timezone.now().timestamp()) < 60
    assert record["FunctionName"] == "chatkit-prod-ChatKitFunction"
    assert (record["TranscriptsFailed"], record["TranscriptsStuck"]) == (2, 1)


def test_metrics_event_for_something_else_is_an_unsupported_event(capsys):
    result = handler({"metrics": "everything"}, None)

    assert result["ok"] is False
    assert capsys.readouterr().out == ""


def test_a_session_call_loads_neither_boto3_nor_django_ses(fake_chatkit, tmp_path):
    """Cold start: what a session call does not need is not imported at start-up."""
    code = """
import json, sys
from chatkit_site.lambda_handler import handler
from tests.lambda_events import http_api_v2_event
status = handler(http_api_v2_event(), None)["statusCode"]
loaded = [name for name in ("boto3", "botocore", "django_ses") if name in sys.modules]
print(json.dumps({"status": status, "loaded": loaded}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SECRET_KEY": "x" * 50,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": fake_chatkit.base_url,
            "CHATKIT_WORKFLOW_ID": "wf_test",
            "LOG_LEVEL": "WARNING",
            # The fresh database has no tables, the rate-limit cache's included.
            "RATE_LIMIT_SESSIONS_PER_IP": "off",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"status": 200, "loaded": []}, result.stderr


@pytest.mark.parametrize(("mode", "loaded"), [("managed", False), ("self_hosted", True)])
def test_the_chatkit_sdks_are_loaded_at_init_only_when_self_hosted(mode, loaded):
    # A fresh interpreter, as a Lambda container starts: managed deployments must not pay
    # for importing the ChatKit and Agents SDKs, self-hosted ones pay it before any request.
    code = (
        "import sys, chatkit_site.lambda_handler; "
        "print('chatkit.server' in sys.modules, 'agents' in sys.modules)"
    )
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "chatkit_site.settings",
        "DJANGO_SECRET_KEY": "tests-only-signing-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "CHATKIT_MODE": mode,
    }

    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(loaded), str(loaded)]
