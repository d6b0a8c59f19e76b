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
from django.core.management import call_command
from django.utils import timezone

from chatkit_api.models import Transcript
from chatkit_site.lambda_handler import ManagementCommandFailed, handler, make_http_handler
from tests.fake_chatkit import API_KEY
from tests.lambda_events import (
    alb_event,
    body_of,
    function_url_event,
    http_api_v2_event,
    rest_api_v1_event,
    scheduled_event,
)

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


class FakeContext:
    aws_request_id = "8f5b3c4e-1b2a-4c3d-9e8f-0a1b2c3d4e5f"


def test_one_json_log_line_per_request(fake_chatkit, caplog):
    with caplog.at_level(logging.INFO, logger="chatkit_site.requests"):
        handler(http_api_v2_event(path="/api/chatkit/session"), FakeContext())

    [record] = [r for r in caplog.records if r.name == "chatkit_site.requests"]
    line = json.loads(record.getMessage())
    assert line["request_id"] == FakeContext.aws_request_id
    assert line["method"] == "POST"
    assert line["path"] == "/api/chatkit/session"
    assert line["status"] == 200
    assert line["duration_ms"] > 0


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


def test_manage_event_with_an_unknown_command_fails_the_invocation():
    with pytest.raises(ManagementCommandFailed, match=r"manage no_such_command exited 1: .*Unknown command"):
        handler({"manage": "no_such_command"}, None)


def test_manage_event_with_bad_arguments_fails_the_invocation():
    with pytest.raises(ManagementCommandFailed, match="no-such-option"):
        handler({"manage": "migrate --no-such-option"}, None)


def test_manage_event_whose_command_fails_fails_the_invocation():
    with pytest.raises(ManagementCommandFailed, match=r"manage resend_transcript exited 1: .*424242"):
        handler({"manage": ["resend_transcript", "424242"]}, None)


def test_empty_manage_event_is_an_error():
    with pytest.raises(ManagementCommandFailed, match="No command given"):
        handler({"manage": ""}, None)


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
