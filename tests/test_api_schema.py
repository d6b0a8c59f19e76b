"""The OpenAPI schema at /api/schema/: served, valid, and true to what the API answers.

Real requests go through the test client to the real views, the fake ChatKit server and
moto's SES; openapi-core checks each request and reply against the schema the service
serves. Every status the schema documents is produced here, and nothing else.
"""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
import yaml
from django.contrib.staticfiles import finders
from django.utils import timezone
from openapi_core import OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse
from rest_framework.test import APIClient

from chatkit_api.models import Transcript
from chatkit_api.rendering import Lead
from tests.conftest import BEFORE_SHUTDOWN, TOKEN
from tests.fake_chatkit import API_KEY, assistant_message, user_message

pytestmark = pytest.mark.django_db

SESSION = "/api/chatkit/session"
TRANSCRIPT = "/api/chatkit/transcript"
REPO = Path(__file__).resolve().parent.parent


class ApiRequest(DjangoOpenAPIRequest):
    # openapi-core reads a path template from Django's route, which it cannot do for the
    # regular expressions with their optional slash; the API's paths have no parameters.
    path_pattern = None


@pytest.fixture
def openapi(api) -> OpenAPI:
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    # Checks the document itself against the OpenAPI 3.0 specification, too.
    return OpenAPI.from_dict(response.json())


def server() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return client


def visitor(fake_chatkit, origin: str = "http://testserver") -> tuple[APIClient, str]:
    # A browser sends the page's Origin with every POST.
    browser = APIClient(HTTP_ORIGIN=origin)
    assert browser.post(SESSION, {}, format="json").status_code == 200
    return browser, fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")[-1].body["user"]


def thread_of(fake_chatkit, user: str) -> str:
    return fake_chatkit.add_thread(user=user, items=[user_message("Brakes?"), assistant_message("Sure.")]).id


# Each case makes one real call and names the status it must get.


def session_created(fake_chatkit, settings):
    return APIClient().post(SESSION, {"locale": "en-GB", "pageUrl": "https://shop.example/"}, format="json")


def session_renewed_with_cookie(fake_chatkit, settings):
    browser, _ = visitor(fake_chatkit)
    return browser.post(SESSION, {}, format="json")


def session_invalid(fake_chatkit, settings):
    return APIClient().post(SESSION, {"locale": "not a locale"}, format="json")


def session_upstream_failed(fake_chatkit, settings):
    fake_chatkit.fail("POST", "/v1/chatkit/sessions", 500)
    with time_machine.travel(BEFORE_SHUTDOWN, tick=True):
        return APIClient().post(SESSION, {}, format="json")


def session_after_agent_builder_shut_down(fake_chatkit, settings):
    fake_chatkit.fail("POST", "/v1/chatkit/sessions", 404)
    with time_machine.travel(datetime(2026, 12, 1, tzinfo=UTC), tick=True):
        return APIClient().post(SESSION, {}, format="json")


def session_not_configured(fake_chatkit, settings):
    settings.CHATKIT_WORKFLOW_ID = ""
    return APIClient().post(SESSION, {}, format="json")


def session_in_self_hosted_mode(fake_chatkit, settings):
    settings.CHATKIT_MODE = "self_hosted"
    return APIClient().post(SESSION, {}, format="json")


def session_from_another_site(fake_chatkit, settings):
    return APIClient().post(SESSION, {}, format="json", HTTP_ORIGIN="https://evil.example")


def too_large(path):
    return APIClient().post(path, json.dumps({"pageUrl": "x" * 200_000}), content_type="application/json")


def session_too_large(fake_chatkit, settings):
    return too_large(SESSION)


def session_rate_limited(fake_chatkit, settings):
    settings.RATE_LIMIT_SESSIONS_PER_IP = (1, 3600)
    APIClient().post(SESSION, {}, format="json")
    return APIClient().post(SESSION, {}, format="json")


def transcript_by_server(fake_chatkit, settings):
    thread_id = thread_of(fake_chatkit, "visitor_abc")
    return server().post(TRANSCRIPT, {"threadId": thread_id, "name": "Sam", "mode": "quote"}, format="json")


def transcript_by_visitor(fake_chatkit, settings):
    browser, user = visitor(fake_chatkit)
    body = {"threadId": thread_of(fake_chatkit, user), "email": "sam@visitor.example", "mode": "recap"}
    return browser.post(TRANSCRIPT, body, format="json")


def transcript_invalid(fake_chatkit, settings):
    return server().post(TRANSCRIPT, {"email": "not an address"}, format="json")


def transcript_malformed_json(fake_chatkit, settings):
    return server().post(TRANSCRIPT, "{not json", content_type="application/json")


def transcript_without_credentials(fake_chatkit, settings):
    return APIClient().post(TRANSCRIPT, {"threadId": "cthr_1"}, format="json")


def transcript_with_a_wrong_token(fake_chatkit, settings):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer wrong")
    return client.post(TRANSCRIPT, {"threadId": "cthr_1"}, format="json")


def transcript_of_someone_else(fake_chatkit, settings):
    browser, _ = visitor(fake_chatkit)
    return browser.post(TRANSCRIPT, {"threadId": thread_of(fake_chatkit, "visitor_other")}, format="json")


def transcript_from_another_site(fake_chatkit, settings):
    browser, user = visitor(fake_chatkit)
    browser.credentials(HTTP_ORIGIN="https://evil.example")
    return browser.post(TRANSCRIPT, {"threadId": thread_of(fake_chatkit, user)}, format="json")


def transcript_too_large(fake_chatkit, settings):
    return too_large(TRANSCRIPT)


def transcript_rate_limited(fake_chatkit, settings):
    settings.RATE_LIMIT_TRANSCRIPTS_PER_THREAD = (1, 3600)
    thread_id = thread_of(fake_chatkit, "visitor_abc")
    server().post(TRANSCRIPT, {"threadId": thread_id, "name": "First"}, format="json")
    return server().post(TRANSCRIPT, {"threadId": thread_id, "name": "Second"}, format="json")


def transcript_key_in_use(fake_chatkit, settings):
    from chatkit_api.idempotency import idempotency_claim

    thread_id = thread_of(fake_chatkit, "visitor_abc")
    # Another instance is still working on this key, for the same request.
    idempotency_claim(caller="server", key="send-1", request={"threadId": thread_id, **asdict(Lead())})
    client = server()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_IDEMPOTENCY_KEY="send-1")
    return client.post(TRANSCRIPT, {"threadId": thread_id}, format="json")


def transcript_being_sent(fake_chatkit, settings):
    from chatkit_api.idempotency import idempotency_attach, idempotency_claim, idempotency_release

    thread_id = thread_of(fake_chatkit, "visitor_abc")
    # Another instance recorded the transcript for this request and is still sending it.
    request = {"threadId": thread_id, **asdict(Lead())}
    claim = idempotency_claim(caller="server", key="send-3", request=request)
    sending = Transcript.objects.create(
        thread_id=thread_id, visitor_id="visitor_abc", requested_by="server", sending_since=timezone.now()
    )
    idempotency_attach(claim=claim, transcript=sending)
    idempotency_release(claim=claim)
    client = server()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_IDEMPOTENCY_KEY="send-3")
    return client.post(TRANSCRIPT, {"threadId": thread_id}, format="json")


def transcript_key_reused(fake_chatkit, settings):
    thread_id = thread_of(fake_chatkit, "visitor_abc")
    client = server()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_IDEMPOTENCY_KEY="send-2")
    client.post(TRANSCRIPT, {"threadId": thread_id, "name": "Sam"}, format="json")
    return client.post(TRANSCRIPT, {"threadId": thread_id, "name": "Someone else"}, format="json")


def transcript_upstream_failed(fake_chatkit, settings):
    fake_chatkit.fail("GET", "/v1/chatkit/threads", 500)
    return server().post(TRANSCRIPT, {"threadId": "cthr_1"}, format="json")


def transcript_mail_refused(fake_chatkit, settings):
    settings.DEFAULT_FROM_EMAIL = "unverified@shop.example"
    thread_id = thread_of(fake_chatkit, "visitor_abc")
    return server().post(TRANSCRIPT, {"threadId": thread_id}, format="json")


def transcript_not_configured(fake_chatkit, settings):
    settings.SES_TO_EMAIL = []
    return server().post(TRANSCRIPT, {"threadId": "cthr_1"}, format="json")


Case = Callable[..., object]
CASES: list[tuple[Case, str, int]] = [
    (session_created, SESSION, 200),
    (session_renewed_with_cookie, SESSION, 200),
    (session_invalid, SESSION, 400),
    (session_from_another_site, SESSION, 403),
    (session_upstream_failed, SESSION, 502),
    (session_after_agent_builder_shut_down, SESSION, 503),
    (session_not_configured, SESSION, 503),
    (session_in_self_hosted_mode, SESSION, 404),
    (session_too_large, SESSION, 413),
    (session_rate_limited, SESSION, 429),
    (transcript_by_server, TRANSCRIPT, 200),
    (transcript_by_visitor, TRANSCRIPT, 200),
    (transcript_invalid, TRANSCRIPT, 400),
    (transcript_malformed_json, TRANSCRIPT, 400),
    (transcript_without_credentials, TRANSCRIPT, 401),
    (transcript_with_a_wrong_token, TRANSCRIPT, 401),
    (transcript_from_another_site, TRANSCRIPT, 403),
    (transcript_of_someone_else, TRANSCRIPT, 404),
    (transcript_key_in_use, TRANSCRIPT, 409),
    (transcript_being_sent, TRANSCRIPT, 409),
    (transcript_too_large, TRANSCRIPT, 413),
    (transcript_key_reused, TRANSCRIPT, 422),
    (transcript_rate_limited, TRANSCRIPT, 429),
    (transcript_upstream_failed, TRANSCRIPT, 502),
    (transcript_mail_refused, TRANSCRIPT, 502),
    (transcript_not_configured, TRANSCRIPT, 503),
]


@pytest.mark.parametrize(("case", "path", "status"), CASES, ids=[case.__name__ for case, _, _ in CASES])
def test_real_replies_match_the_schema(openapi, fake_chatkit, ses, settings, case, path, status):
    response = case(fake_chatkit, settings)

    assert response.status_code == status, response.content
    assert response.wsgi_request.path == path
    request = ApiRequest(response.wsgi_request)
    # Raises, naming the field, when the status, content type or body is not described.
    openapi.validate_response(request, DjangoOpenAPIResponse(response))
    if status < 400:
        # Well-formed calls are described too, credentials included.
        openapi.validate_request(request)


def test_every_documented_status_is_produced_above(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()

    documented = {
        (path, int(status))
        for path, operations in schema["paths"].items()
        for operation in operations.values()
        for status in operation["responses"]
    }
    assert documented == {(path, status) for _, path, status in CASES}


def test_schema_describes_the_two_endpoints_and_both_ways_to_call_the_transcript(api, settings):
    response = api.get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {SESSION, TRANSCRIPT}
    transcript = schema["paths"][TRANSCRIPT]["post"]
    assert transcript["security"] == [{"transcriptToken": []}, {"visitorCookie": []}]
    schemes = schema["components"]["securitySchemes"]
    token, cookie = schemes["transcriptToken"], schemes["visitorCookie"]
    assert (token["type"], token["scheme"]) == ("http", "bearer")
    assert [cookie["type"], cookie["in"], cookie["name"]] == [
        "apiKey",
        "cookie",
        settings.VISITOR_COOKIE_NAME,
    ]
    # The session endpoint reads the cookie when there is one, and starts a visitor when not.
    assert schema["paths"][SESSION]["post"]["security"] == [{"visitorCookie": []}, {}]
    # The request bodies come from the views' serializers, limits and all.
    transcript_body = schema["components"]["schemas"]["TranscriptRequest"]
    assert transcript_body["required"] == ["threadId"]
    assert transcript_body["properties"]["threadId"]["maxLength"] == 128
    assert transcript_body["properties"]["details"]["maxLength"] == 5000


def test_schema_as_json_on_request(api):
    response = api.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    assert response.json()["info"]["title"] == "ChatKit backend API"


def test_schema_answers_get_only(api):
    response = api.post("/api/schema/", {}, format="json")

    assert response.status_code == 405
    # In the schema's own format, YAML unless JSON is asked for.
    assert yaml.safe_load(response.content) == {"error": 'Method "POST" not allowed.'}


def test_docs_page_loads_swagger_ui_from_this_service(api):
    response = api.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-schema-url="/api/schema/?format=json"' in html
    assert "http://" not in html and "https://" not in html
    for asset in (
        "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
        "chatkit_api/api-docs.js",
    ):
        assert f"/static/{asset}" in html
        assert finders.find(asset), asset


def test_api_calls_never_load_drf_spectacular(fake_chatkit, tmp_path):
    """Only the schema view imports drf-spectacular: a cold start of the API must not pay for it."""
    probe = """
import json, sys
import django
django.setup()
from django.core.management import call_command
from django.test import Client

call_command("migrate", verbosity=0)
client = Client(HTTP_ORIGIN="http://testserver")
session = client.post("/api/chatkit/session", {}, content_type="application/json")
# The cookie from the session call authenticates this; OpenAI knows no such thread.
transcript = client.post("/api/chatkit/transcript", {"threadId": "cthr_1"}, content_type="application/json")
loaded_by_api = "drf_spectacular" in sys.modules
schema = client.get("/api/schema/")
print(json.dumps({
    "statuses": [session.status_code, transcript.status_code, schema.status_code],
    "loaded_by_api": loaded_by_api,
    "loaded_by_schema": "drf_spectacular" in sys.modules,
}))
"""
    environment = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "chatkit_site.settings",
        "DJANGO_SECRET_KEY": "tests-only-signing-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_BASE_URL": fake_chatkit.base_url,
        "CHATKIT_WORKFLOW_ID": "wf_test_workflow",
        "SES_TO_EMAIL": "leads@shop.example",
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=environment, capture_output=True, text=True, check=True
    )

    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"statuses": [200, 404, 200], "loaded_by_api": False, "loaded_by_schema": True}
