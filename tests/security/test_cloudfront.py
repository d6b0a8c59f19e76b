"""Threat: a client posing as CloudFront to take another address; and the site served through
CloudFront, where the API sees its origin's host name and the edge's address.

CloudFront-Viewer-Address is trusted only on a request that carries the distribution's secret
(X-Origin-Secret, CLOUDFRONT_ORIGIN_SECRET): anyone can write the header itself. Driven through
the Lambda handler with API Gateway's event shapes, as CloudFront's requests reach it.
"""

import json

import pytest

from chatkit_site.lambda_handler import handler
from tests.lambda_events import function_url_event, http_api_v2_event, rest_api_v1_event
from tests.test_transcript import TRANSCRIPT_URL

pytestmark = pytest.mark.django_db

SESSION_URL = "/api/chatkit/session"
SECRET = "origin-secret-0123456789abcdefghijklmnopqrstuvwxyz"
SITE = "https://www.shop.example"
API_HOST = "abcdefghij.execute-api.eu-west-1.amazonaws.com"
# An address of CloudFront's edge, which API Gateway reports as the source of every request
# the distribution passes on.
EDGE = "130.176.212.7"


@pytest.fixture
def behind_cloudfront(fake_chatkit, settings):
    settings.CLOUDFRONT_ORIGIN_SECRET = SECRET
    settings.PUBLIC_ORIGINS = [SITE]
    settings.RATE_LIMIT_SESSIONS_PER_IP = (1, 3600)


def through_edge(viewer, *, secret=SECRET, event=http_api_v2_event, **options):
    """A session call as CloudFront passes it on: from the edge, with the viewer's address and,
    when given, the secret header."""
    headers = {"cloudfront-viewer-address": viewer, "origin": SITE}
    if secret is not None:
        headers["x-origin-secret"] = secret
    return handler(event(source_ip=EDGE, headers=headers, body={}, **options), None)


def test_visitors_behind_one_edge_are_counted_apart_with_the_secret(behind_cloudfront):
    assert through_edge("198.51.100.10:46532")["statusCode"] == 200
    assert through_edge("198.51.100.11:46532")["statusCode"] == 200
    # The same visitor again, from another port: the same address, over its limit.
    assert through_edge("198.51.100.10:51000")["statusCode"] == 429


def test_ipv6_viewer_addresses_are_read_without_their_port(behind_cloudfront):
    # Written without brackets: the last colon starts the port. Counted by /64 network.
    assert through_edge("2001:db8:85a3:1::8a2e:370:7334:443")["statusCode"] == 200
    assert through_edge("2001:db8:85a3:2::8a2e:370:7334:443")["statusCode"] == 200
    assert through_edge("2001:db8:85a3:1::8a2e:370:7334:8443")["statusCode"] == 429


def test_a_rest_api_event_through_cloudfront_is_counted_by_viewer(behind_cloudfront):
    headers = {"CloudFront-Viewer-Address": "198.51.100.10:1", "X-Origin-Secret": SECRET, "Origin": SITE}
    first = rest_api_v1_event(source_ip=EDGE, headers=headers, body={})
    second = rest_api_v1_event(
        source_ip=EDGE, headers={**headers, "CloudFront-Viewer-Address": "198.51.100.11:1"}, body={}
    )

    assert handler(first, None)["statusCode"] == 200
    assert handler(second, None)["statusCode"] == 200


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET[:-1], SECRET + "x"])
def test_without_the_secret_the_viewer_address_is_ignored(behind_cloudfront, secret):
    # A client that writes the header itself to get a fresh bucket for every call.
    assert through_edge("198.51.100.10:1", secret=secret)["statusCode"] == 200
    refused = through_edge("198.51.100.11:1", secret=secret)

    assert refused["statusCode"] == 429
    assert json.loads(refused["body"])["error"].startswith("Too many requests")


def test_a_service_without_a_secret_trusts_no_viewer_address(behind_cloudfront, settings):
    settings.CLOUDFRONT_ORIGIN_SECRET = ""

    assert through_edge("198.51.100.10:1", secret="")["statusCode"] == 200
    assert through_edge("198.51.100.11:1", secret="")["statusCode"] == 429


@pytest.mark.parametrize("viewer", ["", "not-an-address:443", "198.51.100.10", "198.51.100.300:443"])
def test_a_malformed_viewer_address_leaves_the_edges(behind_cloudfront, viewer):
    assert through_edge(viewer)["statusCode"] == 200
    assert through_edge(viewer)["statusCode"] == 429


def test_the_viewer_address_of_a_function_url_request_is_trusted_too(behind_cloudfront):
    """The streaming function's Function URL is CloudFront's other origin."""
    first = function_url_event(source_ip=EDGE, body={})
    first["headers"].update(
        {"cloudfront-viewer-address": "198.51.100.10:1", "x-origin-secret": SECRET, "origin": SITE}
    )
    second = json.loads(json.dumps(first))
    second["headers"]["cloudfront-viewer-address"] = "198.51.100.11:1"

    assert handler(first, None)["statusCode"] == 200
    assert handler(second, None)["statusCode"] == 200


# --- the site's origin, not the host the API sees ------------------------------------------


def recap_from(fake_chatkit, origin):
    """A visitor's transcript call with their cookie, as CloudFront passes it to the HTTP API:
    the Host is the API's execute-api name, the Origin the site's."""
    session = handler(http_api_v2_event(body={}, headers={"origin": origin}), None)
    assert session["statusCode"] == 200, session["body"]
    cookie = session["cookies"][0].split(";")[0]
    visitor_id = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")[-1].body["user"]
    thread = fake_chatkit.add_thread(user=visitor_id, items=[])
    event = http_api_v2_event(
        path=TRANSCRIPT_URL, body={"threadId": thread.id}, headers={"origin": origin}, cookies=[cookie]
    )
    assert event["headers"]["host"] == API_HOST
    return handler(event, None)


def test_a_visitors_recap_from_the_public_origin_is_served(fake_chatkit, ses, settings):
    settings.PUBLIC_ORIGINS = [SITE]

    response = recap_from(fake_chatkit, SITE)

    assert response["statusCode"] == 200, response["body"]
    [mail] = ses.sent()
    assert mail.destinations


def test_without_public_origins_the_sites_recap_is_refused(fake_chatkit, ses, settings):
    session = handler(http_api_v2_event(body={}, headers={"origin": SITE}), None)

    assert session["statusCode"] == 403
    assert "PUBLIC_ORIGINS" in json.loads(session["body"])["error"]


def test_with_public_origins_the_host_the_api_sees_is_no_longer_its_origin(fake_chatkit, settings):
    settings.PUBLIC_ORIGINS = [SITE]

    response = handler(http_api_v2_event(body={}, headers={"origin": f"https://{API_HOST}"}), None)

    assert response["statusCode"] == 403
    assert not response["cookies"]
