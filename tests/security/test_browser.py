"""Threat: another site using a visitor's browser, and responses a browser could misuse.

CORS grants reading (with credentials) to the listed origins only; a cookie-authenticated
transcript call must come from the API's own origin or a listed one, so another site cannot
make a visitor's browser send mail; oversized bodies are refused unread (413); replies carry
security headers.
"""

import io
import json

import pytest
from django.core.handlers.wsgi import WSGIHandler
from rest_framework.test import APIClient

from chatkit_api.models import Transcript
from chatkit_site.lambda_handler import handler
from tests.conftest import TOKEN
from tests.fake_chatkit import user_message
from tests.lambda_events import http_api_v2_event
from tests.security.helpers import lambda_header
from tests.test_transcript import TRANSCRIPT_URL, send, server_client, visitor_with_thread

pytestmark = pytest.mark.django_db

SESSION_URL = "/api/chatkit/session"
SHOP = "https://shop.example"
EVIL = "https://evil.example"


@pytest.fixture
def shop_origin(settings):
    settings.CORS_ALLOWED_ORIGINS = [SHOP]


def preflight(origin, path=TRANSCRIPT_URL, headers="content-type, idempotency-key"):
    return APIClient().options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers,
    )


# --- CORS -----------------------------------------------------------------------------


def test_preflight_from_a_listed_origin_allows_credentials_and_the_idempotency_key(shop_origin):
    response = preflight(SHOP)

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert response["Access-Control-Allow-Credentials"] == "true"
    assert "idempotency-key" in response["Access-Control-Allow-Headers"].split(", ")
    # PUT: the widget's upload of an attachment to this service (see test_attachments).
    assert response["Access-Control-Allow-Methods"] == "POST, PUT, OPTIONS"


def test_the_self_hosted_widget_on_a_listed_origin_may_call_the_chatkit_endpoint(shop_origin):
    response = preflight(SHOP, path="/api/chatkit", headers="content-type, x-page-url")

    assert response["Access-Control-Allow-Origin"] == SHOP
    assert response["Access-Control-Allow-Credentials"] == "true"
    assert "x-page-url" in response["Access-Control-Allow-Headers"].split(", ")


def test_preflight_from_another_origin_grants_nothing(shop_origin):
    response = preflight(EVIL)

    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Credentials" not in response


def test_a_listed_origin_may_read_the_reply_and_its_retry_after(fake_chatkit, shop_origin):
    response = APIClient().post(SESSION_URL, {}, format="json", HTTP_ORIGIN=SHOP)

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert response["Access-Control-Allow-Credentials"] == "true"
    assert response["Access-Control-Expose-Headers"] == "Retry-After"
    assert "origin" in response["Vary"].lower()


@pytest.mark.parametrize("origin", [EVIL, "null", "https://shop.example.evil.example", "http://shop.example"])
def test_other_origins_may_not_read_replies(fake_chatkit, shop_origin, origin):
    response = APIClient().post(SESSION_URL, {}, format="json", HTTP_ORIGIN=origin)

    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Credentials" not in response


def test_without_listed_origins_no_origin_is_granted(fake_chatkit, settings):
    settings.CORS_ALLOWED_ORIGINS = []

    response = APIClient().post(SESSION_URL, {}, format="json", HTTP_ORIGIN=SHOP)

    assert "Access-Control-Allow-Origin" not in response


def test_cors_is_limited_to_the_api(shop_origin):
    response = preflight(SHOP, path="/admin/login/")

    assert "Access-Control-Allow-Origin" not in response


# --- cookie calls must come from a trusted page ------------------------------------------


def browser_on(origin, fake_chatkit):
    """A visitor's browser, with its cookie, on a page of `origin` (None: no Origin sent)."""
    browser, thread = visitor_with_thread(fake_chatkit, [user_message("my chat")])
    if origin is None:
        del browser.defaults["HTTP_ORIGIN"]
    else:
        browser.defaults["HTTP_ORIGIN"] = origin
    return browser, thread


@pytest.mark.parametrize(
    "origin",
    [None, EVIL, "null", "http://testserver.evil.example", "https://testserver", "not an origin"],
    ids=["no-origin", "other-site", "null", "lookalike", "other-scheme", "garbage"],
)
def test_a_cookie_call_from_another_page_sends_nothing(fake_chatkit, ses, shop_origin, origin):
    browser, thread = browser_on(origin, fake_chatkit)

    response = send(browser, {"threadId": thread.id, "email": "victim@visitor.example"})

    assert response.status_code == 403
    # Without an Origin the reply says that is what is missing; otherwise, what is allowed.
    expected = "needs the Origin header" if origin is None else "CORS_ALLOWED_ORIGINS"
    assert expected in response.json()["error"]
    assert fake_chatkit.requests_to("GET", "/v1/chatkit/threads") == []
    assert Transcript.objects.count() == 0
    assert ses.sent() == []


@pytest.mark.parametrize("origin", ["http://testserver", SHOP, "HTTPS://Shop.Example"])
def test_a_cookie_call_from_the_api_or_a_listed_origin_is_served(fake_chatkit, ses, shop_origin, origin):
    browser, thread = browser_on(origin, fake_chatkit)

    response = send(browser, {"threadId": thread.id})

    assert response.status_code == 200
    assert len(ses.sent()) == 1


def test_a_text_plain_form_post_from_another_site_is_refused(fake_chatkit, ses, shop_origin):
    # A cross-site <form> or no-cors fetch needs no preflight; the Origin still gives it away.
    browser, thread = browser_on(EVIL, fake_chatkit)

    response = browser.post(TRANSCRIPT_URL, json.dumps({"threadId": thread.id}), content_type="text/plain")

    assert response.status_code == 403
    assert ses.sent() == []


@pytest.mark.parametrize("origin", [EVIL, "null", "http://testserver.evil.example"])
def test_a_session_call_from_another_site_sets_no_cookie(fake_chatkit, settings, origin):
    # A <form> on another site posting here navigates the visitor's browser to the reply. The
    # browser leaves out the SameSite=Lax visitor cookie on the way there, but would take a new
    # one from the reply, and with it lose the visitor's history.
    response = APIClient().post(
        SESSION_URL, "locale=en", content_type="application/x-www-form-urlencoded", HTTP_ORIGIN=origin
    )

    assert response.status_code == 403
    assert "CORS_ALLOWED_ORIGINS" in response.json()["error"]
    assert settings.VISITOR_COOKIE_NAME not in response.cookies
    assert fake_chatkit.requests == []


@pytest.mark.parametrize("origin", [None, "http://testserver", SHOP])
def test_a_session_call_from_the_api_a_listed_origin_or_a_server_is_served(fake_chatkit, shop_origin, origin):
    headers = {} if origin is None else {"HTTP_ORIGIN": origin}

    assert APIClient().post(SESSION_URL, {}, format="json", **headers).status_code == 200


def test_server_calls_with_the_token_need_no_origin(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])

    assert send(server_client(), {"threadId": thread.id}).status_code == 200


def test_a_cookie_call_through_lambda_from_the_apis_own_origin(fake_chatkit, ses):
    host = "abcdefghij.execute-api.eu-west-1.amazonaws.com"
    session = handler(http_api_v2_event(body={}), None)
    cookie = session["cookies"][0].split(";")[0]
    visitor_id = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")[-1].body["user"]
    thread = fake_chatkit.add_thread(user=visitor_id, items=[])

    def transcript_from(origin):
        event = http_api_v2_event(
            path=TRANSCRIPT_URL, body={"threadId": thread.id}, headers={"origin": origin}, cookies=[cookie]
        )
        return handler(event, None)["statusCode"]

    assert transcript_from(EVIL) == 403
    assert transcript_from(f"https://{host}") == 200


# --- body size -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SESSION_URL, TRANSCRIPT_URL])
def test_an_oversized_body_is_a_413_and_reaches_nothing(fake_chatkit, ses, settings, path):
    settings.REQUEST_BODY_MAX_BYTES = 1000
    body = json.dumps({"threadId": "cthr_1", "details": "x" * 1000})

    response = server_client().post(path, body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == {"error": "The request body is too large: at most 1000 bytes."}
    assert fake_chatkit.requests == []
    assert Transcript.objects.count() == 0


def test_a_body_at_the_limit_is_read(fake_chatkit, ses, settings):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    body = json.dumps({"threadId": thread.id, "details": ""})
    body = json.dumps({"threadId": thread.id, "details": "x" * (1000 - len(body))})
    assert len(body) == 1000
    settings.REQUEST_BODY_MAX_BYTES = 1000

    assert server_client().post(TRANSCRIPT_URL, body, content_type="application/json").status_code == 200


def test_the_largest_valid_request_fits_the_default_limit(fake_chatkit, ses, settings):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    emoji = "\U0001f697"
    body = {
        "threadId": thread.id,
        "name": emoji * 200,
        "email": f"{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 53}.example",
        "phone": emoji * 50,
        "vehicle": emoji * 200,
        "details": emoji * 5000,
        "mode": "m" * 32,
        "pageUrl": "https://shop.example/" + emoji * 1979,
    }
    # Python escapes every non-ASCII character, here as surrogate pairs of 12 bytes each.
    raw = json.dumps(body)
    assert len(raw) > 85_000

    response = server_client().post(TRANSCRIPT_URL, raw, content_type="application/json")

    assert response.status_code == 200, response.json()


def chunked_through_wsgi(path: str, body: bytes) -> tuple[int, dict]:
    """A POST as a WSGI server that decodes chunked bodies (gunicorn) hands it over: no
    Content-Length, the decoded body in wsgi.input, and wsgi.input_terminated set."""
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "198.51.100.7",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "HTTP_AUTHORIZATION": f"Bearer {TOKEN}",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": io.StringIO(),
    }
    started = {}
    body_parts = WSGIHandler()(environ, lambda status, headers: started.update(status=status))
    return int(started["status"].split()[0]), json.loads(b"".join(body_parts))


def test_a_chunked_body_under_wsgi_is_read(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])

    status, reply = chunked_through_wsgi(TRANSCRIPT_URL, json.dumps({"threadId": thread.id}).encode())

    assert status == 200, reply
    assert len(ses.sent()) == 1


def test_a_chunked_body_under_wsgi_past_the_limit_is_a_413(fake_chatkit, ses, settings):
    settings.REQUEST_BODY_MAX_BYTES = 1000

    status, reply = chunked_through_wsgi(TRANSCRIPT_URL, json.dumps({"details": "x" * 2000}).encode())

    assert status == 413
    assert reply == {"error": "The request body is too large: at most 1000 bytes."}
    assert Transcript.objects.count() == 0


def test_an_oversized_body_through_lambda_is_a_413(fake_chatkit, settings):
    settings.REQUEST_BODY_MAX_BYTES = 1000

    response = handler(http_api_v2_event(body={"pageUrl": "x" * 2000}), None)

    assert response["statusCode"] == 413
    assert fake_chatkit.requests == []


def test_the_413_is_readable_by_a_listed_origin(fake_chatkit, shop_origin, settings):
    settings.REQUEST_BODY_MAX_BYTES = 10

    response = APIClient().post(SESSION_URL, {"pageUrl": "x" * 100}, format="json", HTTP_ORIGIN=SHOP)

    assert response.status_code == 413
    assert response["Access-Control-Allow-Origin"] == SHOP


# --- security headers ----------------------------------------------------------------------


def test_api_replies_carry_security_headers(fake_chatkit):
    response = APIClient().post(SESSION_URL, {}, format="json", secure=True)

    assert response.status_code == 200
    # The reply holds a client secret: no cache may keep it.
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_error_replies_carry_them_too(fake_chatkit):
    response = APIClient().post("/api/chatkit/nothing-here", {}, format="json", secure=True)

    assert response.status_code == 404
    assert response["Cache-Control"] == "no-store"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_https_reaches_lambda_as_https_and_gets_hsts(fake_chatkit):
    response = handler(http_api_v2_event(body={}), None)

    assert response["statusCode"] == 200
    assert lambda_header(response, "Strict-Transport-Security").startswith("max-age=31536000")


def test_a_clients_x_forwarded_proto_does_not_make_plain_http_https(fake_chatkit, settings):
    settings.SECURE_SSL_REDIRECT = True

    response = APIClient().post(SESSION_URL, {}, format="json", HTTP_X_FORWARDED_PROTO="https")

    assert response.status_code == 301
    assert fake_chatkit.requests == []


def test_behind_a_proxy_that_sets_it_x_forwarded_proto_is_trusted(fake_chatkit, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    response = APIClient().post(SESSION_URL, {}, format="json", HTTP_X_FORWARDED_PROTO="https")

    assert response.status_code == 200


def test_plain_http_is_redirected_to_https(fake_chatkit, settings):
    settings.SECURE_SSL_REDIRECT = True

    response = APIClient().post(SESSION_URL, {}, format="json")

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/api/chatkit/session"
    assert fake_chatkit.requests == []


# --- host ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SESSION_URL, "/", "/admin/"])
def test_a_host_not_allowed_is_a_json_400_logged_as_a_warning(fake_chatkit, settings, caplog, path):
    # As in production, where the HTTPS redirect is the first to ask for the host.
    settings.SECURE_SSL_REDIRECT = True

    response = APIClient().post(path, {}, format="json", HTTP_HOST="attacker.example")

    assert response.status_code == 400
    assert response.json() == {"error": "This service does not answer for that host."}
    assert fake_chatkit.requests == []
    assert [record.levelname for record in caplog.records if record.levelname != "WARNING"] == []
    assert (
        "Refused a request for host 'attacker.example': it is not in DJANGO_ALLOWED_HOSTS" in caplog.messages
    )
