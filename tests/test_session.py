import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.signing import TimestampSigner

from tests.fake_chatkit import API_KEY

pytestmark = pytest.mark.django_db

SESSION_URL = "/api/chatkit/session"


def create_session(api, body=None, **extra):
    return api.post(SESSION_URL, body if body is not None else {}, format="json", **extra)


def forwarded_sessions(fake_chatkit):
    return [request.body for request in fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")]


def test_session_returns_client_secret_and_expiry(api, fake_chatkit):
    response = create_session(api, {"locale": "fr", "pageUrl": "https://shop.example/quote"})

    assert response.status_code == 200
    assert response.json()["client_secret"].startswith("ek_test_secret_")
    assert isinstance(response.json()["expires_at"], int)
    [request] = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["openai-beta"] == "chatkit_beta=v1"
    assert request.body["workflow"] == {
        "id": "wf_test_workflow",
        "state_variables": {"locale": "fr", "page_url": "https://shop.example/quote"},
    }


def test_state_variables_default_to_english_and_empty_page(api, fake_chatkit):
    assert create_session(api).status_code == 200

    [body] = forwarded_sessions(fake_chatkit)
    assert body["workflow"]["state_variables"] == {"locale": "en", "page_url": ""}


def test_null_fields_count_as_absent(api, fake_chatkit):
    assert create_session(api, {"locale": None, "pageUrl": None}).status_code == 200

    [body] = forwarded_sessions(fake_chatkit)
    assert body["workflow"]["state_variables"] == {"locale": "en", "page_url": ""}


def test_workflow_version_comes_from_settings(api, fake_chatkit, settings):
    settings.CHATKIT_WORKFLOW_VERSION = "7"

    create_session(api)

    [body] = forwarded_sessions(fake_chatkit)
    assert body["workflow"]["version"] == "7"


def test_client_cannot_choose_the_workflow_or_the_user(api, fake_chatkit):
    response = create_session(api, {"user": "alice", "workflow": {"id": "wf_evil"}, "workflowId": "wf_evil"})

    assert response.status_code == 200
    [body] = forwarded_sessions(fake_chatkit)
    assert body["workflow"]["id"] == "wf_test_workflow"
    assert body["user"] != "alice"
    assert body["user"].startswith("visitor_")


def test_visitor_cookie_is_signed_http_only_and_secure(api, fake_chatkit, settings):
    response = create_session(api)

    cookie = response.cookies[settings.VISITOR_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/api/chatkit"
    assert cookie["max-age"] == 90 * 24 * 3600
    [body] = forwarded_sessions(fake_chatkit)
    # The value is the ChatKit user, signed so that it cannot be chosen by the browser.
    assert cookie.value.startswith(body["user"] + ":")


def test_same_browser_keeps_its_visitor_id(api, fake_chatkit, settings):
    first = create_session(api)
    second = create_session(api)

    first_user, second_user = (body["user"] for body in forwarded_sessions(fake_chatkit))
    assert first_user == second_user
    assert first.json()["client_secret"] != second.json()["client_secret"]
    # Every call renews the cookie so that an active visitor keeps their history.
    assert settings.VISITOR_COOKIE_NAME in second.cookies


def test_different_browsers_get_different_visitor_ids(fake_chatkit):
    from rest_framework.test import APIClient

    create_session(APIClient())
    create_session(APIClient())

    first_user, second_user = (body["user"] for body in forwarded_sessions(fake_chatkit))
    assert first_user != second_user


def test_forged_cookie_is_replaced_by_a_new_visitor(api, fake_chatkit, settings):
    api.cookies[settings.VISITOR_COOKIE_NAME] = "visitor_victim:forged-signature"

    response = create_session(api)

    [body] = forwarded_sessions(fake_chatkit)
    assert body["user"] != "visitor_victim"
    assert response.cookies[settings.VISITOR_COOKIE_NAME].value.startswith(body["user"] + ":")


def test_cookie_signed_for_another_purpose_is_not_accepted(api, fake_chatkit, settings):
    # Signed with the same key but without the visitor salt, e.g. by another Django feature.
    api.cookies[settings.VISITOR_COOKIE_NAME] = TimestampSigner().sign("visitor_victim")

    create_session(api)

    [body] = forwarded_sessions(fake_chatkit)
    assert body["user"] != "visitor_victim"


def test_cookie_settings_for_a_widget_on_another_origin(api, fake_chatkit, settings):
    settings.VISITOR_COOKIE_SAMESITE = "None"
    settings.VISITOR_COOKIE_DOMAIN = "shop.example"

    response = create_session(api)

    cookie = response.cookies[settings.VISITOR_COOKIE_NAME]
    assert cookie["samesite"] == "None"
    assert cookie["secure"] is True
    assert cookie["domain"] == "shop.example"


def test_text_plain_body_is_read_as_json(api, fake_chatkit):
    response = api.post(SESSION_URL, json.dumps({"locale": "de"}), content_type="text/plain")

    assert response.status_code == 200
    [body] = forwarded_sessions(fake_chatkit)
    assert body["workflow"]["state_variables"]["locale"] == "de"


def test_trailing_slash_is_accepted(api, fake_chatkit):
    assert api.post(SESSION_URL + "/", {}, format="json").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"locale": "en\r\nX-Injected: 1"}, "locale"),
        ({"locale": "not a locale"}, "locale"),
        ({"locale": "x" * 36}, "locale"),
        ({"locale": ["en"]}, "locale"),
        ({"pageUrl": "https://shop.example/\nx"}, "pageUrl"),
        ({"pageUrl": "https://shop.example/" + "a" * 2000}, "pageUrl"),
        ({"pageUrl": 0}, "pageUrl"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, fake_chatkit, body, field):
    response = create_session(api, body)

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert field in response.json()["error"]
    assert fake_chatkit.requests == []


def test_malformed_json_is_a_400(api, fake_chatkit):
    response = api.post(SESSION_URL, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    assert fake_chatkit.requests == []


def test_deeply_nested_json_is_a_400(api, fake_chatkit, caplog):
    response = api.post(SESSION_URL, '{"a":' * 1000 + "1" + "}" * 1000, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"error": "JSON parse error - the body is nested too deeply."}
    assert fake_chatkit.requests == []
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []


def test_body_that_is_not_an_object_is_a_400(api, fake_chatkit):
    response = api.post(SESSION_URL, "[1, 2]", content_type="application/json")

    assert response.status_code == 400
    assert "body" in response.json()["fields"]


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        (["OPENAI_API_KEY"], "OPENAI_API_KEY is not set"),
        (["CHATKIT_WORKFLOW_ID"], "CHATKIT_WORKFLOW_ID is not set"),
        (["OPENAI_API_KEY", "CHATKIT_WORKFLOW_ID"], "OPENAI_API_KEY, CHATKIT_WORKFLOW_ID are not set"),
    ],
)
def test_missing_configuration_is_a_503_naming_the_setting(api, fake_chatkit, settings, missing, expected):
    for name in missing:
        setattr(settings, name, "")

    response = create_session(api)

    assert response.status_code == 503
    assert expected in response.json()["error"]
    assert response.json()["missing"] == missing
    assert fake_chatkit.requests == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, "answered HTTP 500"),
        (401, "rejected the API key"),
        (400, "answered HTTP 400"),
        (429, "answered HTTP 429"),
    ],
)
def test_openai_error_is_a_502_without_upstream_details(
    api, fake_chatkit, before_agent_builder_shutdown, status, reason
):
    fake_chatkit.fail(
        "POST", "/v1/chatkit/sessions", status, {"error": {"message": "secret-upstream-detail"}}
    )

    response = create_session(api)

    assert response.status_code == 502
    assert reason in response.json()["error"]
    assert "secret-upstream-detail" not in response.content.decode()
    assert API_KEY not in response.content.decode()


def test_openai_unreachable_is_a_502(api, fake_chatkit, settings, before_agent_builder_shutdown):
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"

    response = create_session(api)

    assert response.status_code == 502
    assert response.json() == {
        "error": "OpenAI could not be reached while creating a ChatKit session. Try again later."
    }


@pytest.mark.parametrize("status", [404, 400, 500])
def test_after_agent_builder_shut_down_a_refused_session_is_a_503_that_says_so(api, fake_chatkit, status):
    fake_chatkit.fail("POST", "/v1/chatkit/sessions", status, {"error": {"message": "Workflow not found"}})

    with time_machine.travel(datetime(2026, 11, 30, 9, tzinfo=UTC), tick=True):
        response = create_session(api)

    assert response.status_code == 503
    error = response.json()["error"]
    assert "Managed ChatKit is no longer available" in error
    assert "Agent Builder" in error and "2026-11-30" in error
    assert "CHATKIT_MODE=self_hosted" in error
    assert "Workflow not found" not in error


@pytest.mark.parametrize(("status", "reason"), [(401, "rejected the API key"), (429, "answered HTTP 429")])
def test_after_the_shutdown_a_rejected_key_or_a_rate_limit_is_still_named(api, fake_chatkit, status, reason):
    fake_chatkit.fail("POST", "/v1/chatkit/sessions", status)

    with time_machine.travel(datetime(2026, 12, 2, tzinfo=UTC), tick=True):
        response = create_session(api)

    assert response.status_code == 502
    assert reason in response.json()["error"]


def test_wrong_method_is_a_json_405(api, fake_chatkit):
    response = api.get(SESSION_URL)

    assert response.status_code == 405
    assert response.json() == {"error": 'Method "GET" not allowed.'}


@pytest.mark.parametrize("path", ["/api/chatkit/other", "/", "/api/chatkit/session/extra"])
def test_unknown_path_is_a_json_404(api, path):
    response = api.post(path, {}, format="json")

    assert response.status_code == 404
    assert response.json() == {"error": "Not found."}


def test_reply_is_json_whatever_the_accept_header(api, fake_chatkit):
    response = create_session(api, HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_unreadable_openai_reply_is_a_502(api, fake_chatkit):
    fake_chatkit.fail("POST", "/v1/chatkit/sessions", 200, {"unexpected": "shape"})

    response = create_session(api)

    assert response.status_code == 502
    assert response.json() == {"error": "OpenAI returned an unreadable answer. Try again later."}
