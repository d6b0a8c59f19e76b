"""The try-it page as the server renders it; tests/test_pages_browser.py drives it."""

import json
import re
import textwrap
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils.html import escape

from chatkit_api.pages import embed_snippet
from tests.conftest import TOKEN
from tests.fake_chatkit import API_KEY
from tests.settings_probe import settings_from

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def page_on(settings, fake_chatkit):
    settings.TRY_IT_PAGE_ENABLED = True


def page_config(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="try-it-config" type="application/json">') + len(
        '<script id="try-it-config" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


@pytest.mark.parametrize("method", ["get", "post"])
def test_page_is_not_there_unless_enabled(client, settings, method):
    settings.TRY_IT_PAGE_ENABLED = False

    response = getattr(client, method)("/")

    assert response.status_code == 404
    assert response.json() == {"error": "Not found."}
    assert "csrftoken" not in response.cookies


def test_page_embeds_chatkit_and_points_it_at_this_service(client, page_on, settings):
    settings.CHATKIT_SCRIPT_URL = "https://cdn.example/chatkit.js"

    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<script src="https://cdn.example/chatkit.js" async></script>' in html
    assert '<openai-chatkit id="chatkit"></openai-chatkit>' in html
    assert page_config(response) == {
        "chatkitScriptUrl": "https://cdn.example/chatkit.js",
        "selfHosted": False,
        "apiUrl": "/api/chatkit/session",
        "domainKey": "domain_pk_localhost_dev",
        "transcriptUrl": "/api/chatkit/transcript",
        "csrfCookieName": "csrftoken",
        "visitorCopy": False,
        "attachments": {"enabled": False},
    }
    for link in ('href="/admin/"', 'href="/api/docs/"', 'href="/api/schema/"'):
        assert link in html
    assert "Sessions: ready" in html
    assert "Recaps: ready" in html


def test_page_holds_no_secret_and_sets_the_csrf_cookie(client, page_on, settings):
    response = client.get("/")

    html = response.content.decode()
    for secret in (API_KEY, TOKEN, settings.SECRET_KEY):
        assert secret not in html
    # The page's calls send the token along, whichever protection the API applies.
    assert response.cookies["csrftoken"].value


@pytest.mark.parametrize(
    ("blank", "shown"),
    [
        (
            ["OPENAI_API_KEY"],
            [
                "Sessions cannot start: OPENAI_API_KEY is not set.",
                "Recaps cannot be sent: OPENAI_API_KEY is not set.",
            ],
        ),
        (
            ["OPENAI_API_KEY", "CHATKIT_WORKFLOW_ID"],
            ["Sessions cannot start: OPENAI_API_KEY, CHATKIT_WORKFLOW_ID are not set."],
        ),
        (["SES_TO_EMAIL"], ["Sessions: ready", "Recaps cannot be sent: SES_TO_EMAIL is not set."]),
    ],
)
def test_page_names_each_missing_setting(client, page_on, settings, blank, shown):
    for name in blank:
        setattr(settings, name, [] if name == "SES_TO_EMAIL" else "")

    html = client.get("/").content.decode()

    for line in shown:
        assert line in html


def test_page_says_where_mail_goes_and_who_gets_a_recap(client, page_on, settings):
    settings.SES_FROM_EMAIL = ""
    settings.ALLOW_USER_RECAP = False
    html = client.get("/").content.decode()
    assert "SES_FROM_EMAIL is not set" in html
    assert "a copy to the visitor needs ALLOW_USER_RECAP=true" in html

    settings.SES_FROM_EMAIL = "chat@shop.example"
    settings.ALLOW_USER_RECAP = True
    response = client.get("/")
    assert "SES_FROM_EMAIL" not in response.content.decode()
    assert "ALLOW_USER_RECAP" not in response.content.decode()
    assert page_config(response)["visitorCopy"] is True


def test_snippet_carries_this_services_session_url(page_on, settings):
    settings.ALLOWED_HOSTS = ["api.shop.example"]

    response = Client(HTTP_HOST="api.shop.example").get("/", secure=True)

    snippet = embed_snippet(api_url="https://api.shop.example/api/chatkit/session", self_hosted=False)
    assert 'fetch("https://api.shop.example/api/chatkit/session"' in snippet
    assert f'<code id="snippet">{escape(snippet)}</code>' in response.content.decode()


def test_self_hosted_snippet_is_the_whole_setoptions_call_with_this_services_url(page_on, settings):
    settings.CHATKIT_MODE = "self_hosted"
    settings.CHATKIT_DOMAIN_KEY = "domain_pk_shop123"
    settings.ALLOWED_HOSTS = ["api.shop.example"]

    response = Client(HTTP_HOST="api.shop.example").get("/", secure=True)

    snippet = embed_snippet(api_url="https://api.shop.example/api/chatkit", self_hosted=True)
    for part in (
        'const chatkitUrl = "https://api.shop.example/api/chatkit";',
        "url: chatkitUrl,",
        'domainKey: "domain_pk_shop123"',
        # This service's calls only: the visitor cookie and the page's address.
        "if (target.href !== chatkitUrl) return fetch(input, init);",
        'headers.set("X-Page-URL", location.href);',
        'credentials: "include"',
        'uploadStrategy: { type: "two_phase" },',
        # The files this server takes, within its limits (images and PDFs by default).
        "enabled: true,",
        "maxSize: 10485760,",
        "maxCount: 4,",
        'accept: {"image/png": [], "image/jpeg": [], "image/gif": [], "image/webp": [], '
        '"application/pdf": []},',
        "history: { enabled: true },",
        "threadItemActions: { feedback: true },",
        'chatkit.sendCustomAction({ type: "send_recap", payload: { ...details, pageUrl: location.href } });',
        'chatkit.addEventListener("chatkit.effect", (event) => {',
        'if (event.detail.name === "recap_sent") {',
    ):
        assert part in snippet
    assert "getClientSecret" not in snippet
    assert f'<code id="snippet">{escape(snippet)}</code>' in response.content.decode()
    config = page_config(response)
    assert (config["selfHosted"], config["apiUrl"], config["domainKey"]) == (
        True,
        "/api/chatkit",
        "domain_pk_shop123",
    )


def test_files_are_offered_within_the_servers_limits(client, page_on, settings):
    settings.CHATKIT_MODE = "self_hosted"
    settings.CHATKIT_ATTACHMENTS_MAX_BYTES = 2 * 1024 * 1024
    settings.CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE = 2
    settings.CHATKIT_ATTACHMENTS_MIME_TYPES = ["image/png", "application/pdf"]

    response = client.get("/")

    assert page_config(response)["attachments"] == {
        "enabled": True,
        "maxSize": 2097152,
        "maxCount": 2,
        "accept": {"image/png": [], "application/pdf": []},
    }
    html = response.content.decode()
    assert "image/png, application/pdf, at most 2 per message of 2.0\xa0MB each." in html
    assert "maxCount: 2," in html


S3_STORAGE = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": "shop-attachments"}}


@pytest.mark.parametrize(
    ("changes", "offered"),
    [
        ({}, True),
        ({"CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE": 0}, False),
        ({"CHATKIT_ATTACHMENTS_MIME_TYPES": []}, False),
        # Lambda's disk is read-only: files need the bucket there.
        ({"RUNNING_ON_LAMBDA": True}, False),
        ({"RUNNING_ON_LAMBDA": True, "STORAGES": {"chatkit_attachments": S3_STORAGE}}, True),
        # Managed sessions upload to OpenAI as the workflow says, never here.
        ({"CHATKIT_MODE": "managed"}, False),
    ],
)
def test_files_are_offered_only_where_the_self_hosted_server_takes_them(
    client, page_on, settings, changes, offered
):
    settings.CHATKIT_MODE = "self_hosted"
    for name, value in changes.items():
        setattr(settings, name, {**settings.STORAGES, **value} if name == "STORAGES" else value)

    response = client.get("/")

    assert page_config(response)["attachments"]["enabled"] is offered
    html = response.content.decode()
    if settings.CHATKIT_MODE == "managed":
        assert "Attachments:" not in html
    elif offered:
        assert "Attachments: on." in html
        assert escape("enabled: true,") in html
    else:
        assert "Attachments: off. This server takes no uploads" in html
        assert escape("composer: { attachments: { enabled: false } },") in html


@pytest.mark.parametrize(("self_hosted", "doc"), [(False, "api.md"), (True, "self-hosted.md")])
def test_the_docs_show_the_same_snippets(settings, self_hosted, doc):
    settings.CHATKIT_SCRIPT_URL = "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js"
    settings.CHATKIT_DOMAIN_KEY = ""
    text = (REPO / "docs" / doc).read_text()
    path = "/api/chatkit" if self_hosted else "/api/chatkit/session"

    snippet = embed_snippet(api_url=f"https://api.example.com{path}", self_hosted=self_hosted)

    # Blocks inside a numbered list are indented; compare them without it.
    blocks = re.findall(r"^( *)```html\n(.*?)^\1```", text, flags=re.DOTALL | re.MULTILINE)
    assert snippet in [textwrap.dedent(block).strip() for _, block in blocks]


def test_page_answers_get_only(client, page_on):
    response = client.post("/", {})

    assert response.status_code == 405


@pytest.mark.parametrize(
    ("environment", "enabled"),
    [
        ({"DJANGO_DEBUG": "true"}, True),
        ({"DJANGO_DEBUG": "false"}, False),
        ({"DJANGO_DEBUG": "false", "TRY_IT_PAGE_ENABLED": "true"}, True),
        ({"DJANGO_DEBUG": "true", "TRY_IT_PAGE_ENABLED": "false"}, False),
    ],
)
def test_page_is_on_in_local_development_and_where_a_setting_turns_it_on(environment, enabled):
    built = settings_from({"DJANGO_SECRET_KEY": "tests-only", **environment}, "TRY_IT_PAGE_ENABLED")

    assert built == {"TRY_IT_PAGE_ENABLED": enabled}


def test_self_hosted_mode_is_named_instead_of_missing_workflow_settings(client, settings, page_on):
    settings.CHATKIT_MODE = "self_hosted"
    settings.CHATKIT_WORKFLOW_ID = ""

    html = client.get("/").content.decode()

    assert "Chat: ready. Self-hosted (CHATKIT_MODE=self_hosted)" in html
    assert "Sessions cannot start" not in html
    # A self-hosted thread is read from the database: recaps need no OpenAI key.
    assert "Recaps: ready (SES_TO_EMAIL is set)." in html

    settings.OPENAI_API_KEY = ""
    assert "The chat cannot answer: OPENAI_API_KEY is not set." in client.get("/").content.decode()


def test_the_favicon_browsers_ask_for_is_there(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 302
    assert response["Location"] == "/static/chatkit_api/favicon.svg"
    assert finders.find("chatkit_api/favicon.svg")
