"""Threat: credentials leaking through logs, error replies or the admin.

The OpenAI key, the transcript token, the signing key and AWS credentials never appear in
what the service writes or shows, even when an upstream error or a backend's exception
quotes them; the token is compared in constant time.
"""

import io
import logging

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from rest_framework.test import APIClient

from chatkit_api import authentication
from chatkit_api.models import Transcript
from chatkit_api.redaction import REDACTED, RedactSecretsFilter, secrets_redact
from tests.conftest import TOKEN
from tests.fake_chatkit import API_KEY, user_message
from tests.test_transcript import TRANSCRIPT_URL, send, server_client

pytestmark = pytest.mark.django_db

AWS_SECRET = "aws-secret-access-key-for-tests-0123456789"
AWS_SESSION_TOKEN = "aws-session-token-for-tests-abcdefghijklmnop"


@pytest.fixture
def aws_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", AWS_SESSION_TOKEN)


def all_secrets():
    return [API_KEY, TOKEN, django_settings.SECRET_KEY, AWS_SECRET, AWS_SESSION_TOKEN]


def assert_no_secret_in(text):
    for secret in all_secrets():
        assert secret not in text


@pytest.fixture
def log_output():
    """What the project's own log handler writes, through its filters and formatter."""
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if any(isinstance(f, RedactSecretsFilter) for f in handler.filters)
    ]
    assert handlers, "no configured handler redacts secrets"
    stream = io.StringIO()
    previous = [handler.setStream(stream) for handler in handlers]
    yield stream
    for handler, old in zip(handlers, previous, strict=True):
        handler.setStream(old)


def test_every_configured_log_handler_redacts():
    handlers = django_settings.LOGGING["handlers"]

    assert handlers
    assert all("redact_secrets" in handler.get("filters", []) for handler in handlers.values())


def test_an_upstream_error_quoting_secrets_is_redacted_in_logs_and_not_replied(
    fake_chatkit, ses, aws_secrets, log_output
):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    quoted = f"key {API_KEY} token {TOKEN} aws {AWS_SECRET} session {AWS_SESSION_TOKEN}"
    fake_chatkit.fail("GET", f"/v1/chatkit/threads/{thread.id}", 500, {"error": {"message": quoted}})

    response = send(server_client(), {"threadId": thread.id})

    logged = log_output.getvalue()
    assert f"key {REDACTED} token {REDACTED} aws {REDACTED} session {REDACTED}" in logged
    assert_no_secret_in(logged)
    assert response.status_code == 502
    assert_no_secret_in(response.content.decode())
    assert "key" not in response.json()["error"]


def test_a_mail_error_quoting_a_secret_is_redacted_where_staff_read_it(
    fake_chatkit, ses, settings, log_output, admin_client
):
    # SES rejects an unverified sender and quotes the address, here one made of the token.
    settings.DEFAULT_FROM_EMAIL = f"{TOKEN}@shop.example"
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])

    response = send(server_client(), {"threadId": thread.id})

    transcript = Transcript.objects.get()
    [email] = transcript.emails.all()
    assert response.status_code == 502
    assert f"Did not have authority to send from email {REDACTED}@shop.example" in email.error
    assert TOKEN not in email.error
    assert TOKEN not in transcript.error
    logged = log_output.getvalue()
    assert "Traceback" in logged
    assert TOKEN not in logged
    changelist = admin_client.get(reverse("admin:chatkit_api_transcript_changelist"))
    change = admin_client.get(reverse("admin:chatkit_api_transcript_change", args=[transcript.id]))
    assert changelist.status_code == change.status_code == 200
    assert f"{REDACTED}@shop.example" in change.content.decode()
    assert_no_secret_in(changelist.content.decode())
    assert_no_secret_in(change.content.decode())


@pytest.mark.parametrize(
    ("path", "fail_path"),
    [("/api/chatkit/session", "/v1/chatkit/sessions"), (TRANSCRIPT_URL, "/v1/chatkit/threads")],
)
def test_error_replies_never_quote_a_credential(fake_chatkit, ses, path, fail_path):
    fake_chatkit.add_thread(user="visitor_abc", items=[], thread_id="cthr_x")
    method = "POST" if "sessions" in fail_path else "GET"
    fake_chatkit.fail(
        method, fail_path, 401, {"error": {"message": f"Incorrect API key provided: {API_KEY}"}}
    )

    response = server_client().post(path, {"threadId": "cthr_x"}, format="json")

    assert response.status_code == 502
    assert response.json()["error"].startswith("OpenAI rejected the API key (HTTP 401)")
    assert_no_secret_in(response.content.decode())


def test_a_wrong_token_is_not_answered_with_the_right_one(fake_chatkit):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}")

    response = client.post(TRANSCRIPT_URL, {"threadId": "cthr_x"}, format="json")

    assert response.status_code == 401
    assert_no_secret_in(response.content.decode())
    assert_no_secret_in(str(response.headers))


def test_the_token_is_compared_in_constant_time(fake_chatkit, monkeypatch):
    compared = []
    real_compare = authentication.constant_time_compare

    def spy(given, expected):
        compared.append((given, expected))
        return real_compare(given, expected)

    monkeypatch.setattr(authentication, "constant_time_compare", spy)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-the-token")

    assert client.post(TRANSCRIPT_URL, {"threadId": "cthr_x"}, format="json").status_code == 401
    assert compared == [("not-the-token", TOKEN)]


def test_redaction_replaces_whole_secrets_and_leaves_short_values(settings):
    settings.OPENAI_API_KEY = "sk-outer-secret-value"
    settings.TRANSCRIPT_API_TOKEN = "outer-secret"
    # Too short to be a credential; redacting it would mangle ordinary words.
    settings.SECRET_KEY = "abc"

    assert secrets_redact("sk-outer-secret-value / outer-secret / abc") == f"{REDACTED} / {REDACTED} / abc"
