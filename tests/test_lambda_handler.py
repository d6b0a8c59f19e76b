import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatkit_site.lambda_handler import handler
from tests.lambda_events import http_api_v2_event, rest_api_v1_event

pytestmark = pytest.mark.django_db


def test_http_api_event_creates_a_session_and_sets_the_cookie(fake_chatkit, settings):
    response = handler(http_api_v2_event(body={"locale": "es"}), None)

    assert response["statusCode"] == 200
    assert json.loads(response["body"])["client_secret"].startswith("ek_test_secret_")
    [cookie] = response["cookies"]
    assert cookie.startswith(f"{settings.VISITOR_COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    [request] = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")
    assert request.body["workflow"]["state_variables"]["locale"] == "es"


def test_rest_api_event_reaches_the_transcript_endpoint(fake_chatkit):
    response = handler(rest_api_v1_event(path="/api/chatkit/transcript", body={"threadId": "cthr_1"}), None)

    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"]


def test_unknown_path_is_a_json_404(fake_chatkit):
    response = handler(http_api_v2_event(path="/nope"), None)

    assert response["statusCode"] == 404
    assert json.loads(response["body"]) == {"error": "Not found."}


def test_non_http_event_gets_a_clear_error():
    assert handler({"detail-type": "Something"}, None)["ok"] is False


def _environ_seen_by_django(event):
    """Run the event through apig-wsgi and return the WSGI environ Django received."""
    from apig_wsgi import make_lambda_handler

    from chatkit_site.lambda_handler import with_platform_client_ip

    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return [b""]

    make_lambda_handler(with_platform_client_ip(app), binary_support=True)(event, None)
    return seen


def test_rest_api_client_ip_is_the_one_api_gateway_saw_not_x_forwarded_for():
    event = rest_api_v1_event(
        source_ip="198.51.100.20", headers={"X-Forwarded-For": "10.9.9.9, 198.51.100.20"}
    )

    assert _environ_seen_by_django(event)["REMOTE_ADDR"] == "198.51.100.20"


def test_http_api_client_ip_ignores_a_forged_x_forwarded_for():
    event = http_api_v2_event(source_ip="198.51.100.21", headers={"x-forwarded-for": "10.9.9.9"})

    assert _environ_seen_by_django(event)["REMOTE_ADDR"] == "198.51.100.21"


@pytest.mark.parametrize(("mode", "loaded"), [("managed", False), ("self_hosted", True)])
def test_the_chatkit_sdks_are_loaded_at_init_only_when_self_hosted(mode, loaded):
    # A fresh interpreter, as a Lambda container starts: managed deployments must not pay
    # for importing the ChatKit and Agents SDKs, self-hosted ones pay it before any request.
    code = (
        "import sys, chatkit_site.lambda_handler; "
        "print('chatkit.server' in sys.modules, 'agents' in sys.modules)"
    )
    env = {**os.environ, "CHATKIT_MODE": mode, "DJANGO_SETTINGS_MODULE": "tests.settings"}

    result = subprocess.run(  # noqa: S603 - the test's own interpreter and code
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(loaded), str(loaded)]
