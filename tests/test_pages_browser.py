"""The try-it page and the API docs in headless Chromium (see tests/browser.py).

The page runs against the live test server, with the fake ChatKit API behind it and SES in
moto. OpenAI's CDN cannot be reached here, so CHATKIT_SCRIPT_URL points at a stand-in for
ChatKit's script (tests/chatkit_standin.js) that a loopback server serves. Screenshots go
to test-artifacts/.
"""

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions

from chatkit_api.models import ChatKitAttachment, Transcript, TranscriptStatus
from tests.browser import SentRequest, needs_chromium, requests_sent, wait_for
from tests.conftest import STAFF, s3_client
from tests.fake_chatkit import assistant_message, user_message
from tests.fake_responses import ANSWER
from tests.test_attachments import PNG

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True)]

TESTS = Path(__file__).resolve().parent
ARTIFACTS = TESTS.parent / "test-artifacts"
STANDIN_PATH = "/deployments/chatkit/chatkit.js"


class ScriptServer:
    """Serves the ChatKit stand-in on loopback, as the CDN serves the real script, and the
    pages a test puts in `pages` (a site's own page, on an origin of its own)."""

    def __init__(self) -> None:
        self.requested: list[str] = []
        self.pages: dict[str, str] = {}
        script = (TESTS / "chatkit_standin.js").read_bytes()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requested.append(self.path)
                if self.path in server.pages:
                    self._send("text/html; charset=utf-8", server.pages[self.path].encode())
                elif self.path == STANDIN_PATH:
                    self._send("text/javascript", script)
                else:
                    self.send_error(404)

            def _send(self, content_type: str, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{STANDIN_PATH}"

    @property
    def site_origin(self) -> str:
        """Its origin as a page of the site: the same site as the live server (`localhost`),
        which the visitor cookie (SameSite=Lax) needs, on another port, so another origin."""
        return f"http://localhost:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chatkit_script() -> Iterator[ScriptServer]:
    server = ScriptServer()
    yield server
    server.stop()


@pytest.fixture
def try_it(live_server, fake_chatkit, settings, chatkit_script) -> str:
    """The page's URL, with the page on and the live server's plain HTTP allowed."""
    settings.TRY_IT_PAGE_ENABLED = True
    settings.CHATKIT_SCRIPT_URL = chatkit_script.url
    settings.VISITOR_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    return f"{live_server.url}/"


def status_lines(browser: WebDriver) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#status li')].map((entry) => entry.lastChild.textContent);"
    )


def wait_for_status(browser: WebDriver, beginning: str) -> str:
    wait_for(browser, lambda b: any(line.startswith(beginning) for line in status_lines(b)))
    return next(line for line in status_lines(browser) if line.startswith(beginning))


def stand_in(browser: WebDriver) -> dict[str, Any]:
    return browser.execute_script(
        "const {clientSecretCalls, clientSecrets, threadId} = window.chatkitStandIn;"
        "return {clientSecretCalls, clientSecrets, threadId};"
    )


def chat(browser: WebDriver, text: str) -> None:
    widget = browser.find_element(By.ID, "chatkit").shadow_root
    widget.find_element(By.CSS_SELECTOR, "input").send_keys(text)
    widget.find_element(By.CSS_SELECTOR, "button").click()


def cookies(browser: WebDriver) -> dict[str, dict[str, Any]]:
    # WebDriver's own cookie list only holds those of the page's path; the visitor
    # cookie's path is /api/chatkit.
    return {
        cookie["name"]: cookie for cookie in browser.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    }


def screenshot(browser: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.set_window_size(1280, browser.execute_script("return document.documentElement.scrollHeight") + 40)
    assert browser.save_screenshot(str(ARTIFACTS / name))


def test_visitor_chats_refreshes_and_mails_a_recap(
    try_it, browser, fake_chatkit, ses, settings, chatkit_script, live_server
):
    settings.ALLOW_USER_RECAP = True
    browser.get(try_it)

    # ChatKit starts and asks for its first secret.
    assert wait_for_status(browser, "Session created: ChatKit has a client secret, valid until ")
    assert chatkit_script.requested == [STANDIN_PATH]
    [created] = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")
    visitor_id = created.body["user"]
    assert created.body["workflow"]["state_variables"] == {"locale": "en-US", "page_url": try_it}
    first = stand_in(browser)
    assert first["clientSecretCalls"] == [None]
    [first_secret] = first["clientSecrets"]
    assert first_secret.startswith("ek_test_secret_")
    assert first_secret not in browser.page_source
    visitor_cookie = cookies(browser)[settings.VISITOR_COOKIE_NAME]
    assert visitor_cookie["value"].startswith(f"{visitor_id}:")
    assert visitor_cookie["httpOnly"] is True
    assert visitor_cookie["path"] == "/api/chatkit"
    assert visitor_cookie["sameSite"] == "Lax"

    # The secret nears its end: ChatKit asks again with the one it holds.
    browser.execute_script("return window.chatkitStandIn.expireSecret();")
    assert wait_for_status(browser, "Session refreshed: ChatKit has a client secret")
    refreshed = stand_in(browser)
    assert refreshed["clientSecretCalls"] == [None, first_secret]
    assert refreshed["clientSecrets"][1] != first_secret
    [_, renewed] = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")
    assert renewed.body["user"] == visitor_id  # the browser sent its cookie back

    # The first message starts a thread, which OpenAI then holds for this visitor.
    chat(browser, "My front brakes squeal.")
    thread_id = wait_for_status(browser, "Thread cthr_").split()[1]
    assert stand_in(browser)["threadId"] == thread_id
    fake_chatkit.add_thread(
        user=visitor_id,
        thread_id=thread_id,
        items=[user_message("My front brakes squeal."), assistant_message("Thanks! Which car is it?")],
    )
    assert browser.find_element(By.ID, "recap-thread").text == f"The recap mails thread {thread_id}."

    form = browser.find_element(By.ID, "recap-form")
    form.find_element(By.NAME, "name").send_keys("Zoë Brontë")
    form.find_element(By.NAME, "email").send_keys("zoe@visitor.example")
    form.find_element(By.CSS_SELECTOR, "button").click()
    sent_line = wait_for_status(browser, "Recap sent")

    transcript = Transcript.objects.get()
    assert (
        sent_line == f"Recap sent: transcript #{transcript.id}, mailed to staff and to zoe@visitor.example."
    )
    assert (transcript.thread_id, transcript.visitor_id) == (thread_id, visitor_id)
    assert (transcript.requested_by, transcript.mode) == ("visitor", "recap")
    assert transcript.status == TranscriptStatus.SENT
    staff_mail, visitor_mail = ses.sent()
    assert staff_mail.destinations == [STAFF]
    assert visitor_mail.destinations == ["zoe@visitor.example"]
    assert "User: My front brakes squeal." in staff_mail.text

    requests = requests_sent(browser)
    session_calls = [r for r in requests if r.url == f"{live_server.url}/api/chatkit/session"]
    assert len(session_calls) == 2
    for call in session_calls:
        assert call.method == "POST"
        assert call.headers["origin"] == live_server.url
        assert json.loads(call.body or "") == {"locale": "en-US", "pageUrl": try_it}
    [recap] = [r for r in requests if r.url == f"{live_server.url}/api/chatkit/transcript"]
    assert json.loads(recap.body or "") == {
        "threadId": thread_id,
        "mode": "recap",
        "name": "Zoë Brontë",
        "email": "zoe@visitor.example",
        "pageUrl": try_it,
    }
    # What a browser call relies on: the visitor cookie, its own Origin and the CSRF token.
    assert recap.method == "POST"
    assert recap.headers["origin"] == live_server.url
    assert f"{settings.VISITOR_COOKIE_NAME}=" in recap.headers["cookie"]
    assert recap.headers["x-csrftoken"] == cookies(browser)[settings.CSRF_COOKIE_NAME]["value"]
    assert "authorization" not in recap.headers

    screenshot(browser, "try-it-page.png")


def widget_text(browser: WebDriver) -> str:
    return browser.find_element(By.ID, "chatkit").shadow_root.find_element(By.CSS_SELECTOR, ".messages").text


def chatkit_calls(requests: list[SentRequest], live_server) -> list[SentRequest]:
    """The ChatKit requests among those sent (a cross-origin page's CORS preflights left out)."""
    return [r for r in requests if r.url == f"{live_server.url}/api/chatkit" and r.method == "POST"]


def protocol_requests(browser: WebDriver) -> list[str]:
    return browser.execute_script("return window.chatkitStandIn.protocolRequests;")


def send_recap_form(browser: WebDriver, name: str = "", email: str = "") -> None:
    form = browser.find_element(By.ID, "recap-form")
    form.find_element(By.NAME, "name").send_keys(name)
    form.find_element(By.NAME, "email").send_keys(email)
    form.find_element(By.CSS_SELECTOR, "button").click()


def test_self_hosted_visitor_chats_with_the_agent_and_sends_a_recap_through_the_action(
    try_it, fake_responses, browser, ses, settings, live_server
):
    settings.ALLOW_USER_RECAP = True
    browser.get(try_it)

    setup = browser.find_element(By.ID, "setup").text
    assert "Chat: ready. Self-hosted" in setup
    assert "Attachments: on." in setup
    assert wait_for_status(browser, "ChatKit talks to /api/chatkit, where this service runs the agent")
    assert browser.execute_script("return window.chatkitStandIn.options;") == {
        "api": {
            "url": "/api/chatkit",
            "domainKey": "domain_pk_localhost_dev",
            "uploadStrategy": {"type": "two_phase"},
            "fetch": "function",
        },
        "composer": {
            "attachments": {
                "enabled": True,
                "maxSize": settings.CHATKIT_ATTACHMENTS_MAX_BYTES,
                "maxCount": settings.CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE,
                "accept": {mime_type: [] for mime_type in settings.CHATKIT_ATTACHMENTS_MIME_TYPES},
            }
        },
        "history": {"enabled": True},
    }

    # The agent's model (the fake Responses API) answers each message.
    chat(browser, "My front brakes squeal.")
    thread_id = wait_for_status(browser, "Thread thr_").split()[1]
    wait_for(browser, lambda b: ANSWER in widget_text(b))
    chat(browser, "A 2019 Golf.")
    wait_for(browser, lambda b: widget_text(b).count(ANSWER) == 2)
    assert browser.find_element(By.ID, "recap-thread").text == f"The recap mails thread {thread_id}."

    send_recap_form(browser, "Zoë Brontë", "zoe@visitor.example")
    sent_line = wait_for_status(browser, "Recap sent")

    transcript = Transcript.objects.get()
    assert (
        sent_line == f"Recap sent: transcript #{transcript.id}, mailed to staff and to zoe@visitor.example."
    )
    visitor_cookie = cookies(browser)[settings.VISITOR_COOKIE_NAME]
    assert visitor_cookie["value"].startswith(f"{transcript.visitor_id}:")
    assert (transcript.thread_id, transcript.requested_by, transcript.mode) == (thread_id, "visitor", "recap")
    assert (transcript.name, transcript.email, transcript.page_url) == (
        "Zoë Brontë",
        "zoe@visitor.example",
        try_it,
    )
    assert transcript.status == TranscriptStatus.SENT
    staff_mail, visitor_mail = ses.sent()
    assert staff_mail.destinations == [STAFF]
    assert visitor_mail.destinations == ["zoe@visitor.example"]
    for line in (
        "Name: Zoë Brontë",
        "User: My front brakes squeal.",
        f"Assistant: {ANSWER}",
        "User: A 2019 Golf.",
    ):
        assert line in staff_mail.text
    assert protocol_requests(browser) == [
        "threads.create",
        "threads.add_user_message",
        "threads.custom_action",
    ]

    # Every call went to the ChatKit endpoint as a site's widget sends it: the visitor cookie
    # (once the first reply set it), the page's Origin and address; no CSRF token is needed.
    requests = requests_sent(browser)
    calls = chatkit_calls(requests, live_server)
    assert [json.loads(call.body or "")["type"] for call in calls] == protocol_requests(browser)
    for call in calls:
        assert call.headers["origin"] == live_server.url
        assert call.headers["x-page-url"] == try_it
    for call in calls[1:]:
        assert f"{settings.VISITOR_COOKIE_NAME}=" in call.headers["cookie"]
    assert json.loads(calls[-1].body or "") == {
        "type": "threads.custom_action",
        "params": {
            "thread_id": thread_id,
            "item_id": None,
            "action": {
                "type": "send_recap",
                "payload": {
                    "mode": "recap",
                    "name": "Zoë Brontë",
                    "email": "zoe@visitor.example",
                    "pageUrl": try_it,
                },
            },
        },
        "metadata": {},
    }
    # Neither the session nor the transcript endpoint: the recap went as the action.
    assert [r.url for r in requests if "/api/chatkit" in r.url] == [call.url for call in calls]
    screenshot(browser, "try-it-page-self-hosted.png")


def test_self_hosted_recap_that_ses_refuses_shows_the_error_and_is_kept_for_a_resend(
    try_it, fake_responses, browser, ses, settings
):
    # SES refuses a sender that is not verified.
    settings.DEFAULT_FROM_EMAIL = "Chat Bot <chat@unverified.example>"
    browser.get(try_it)
    chat(browser, "Hello?")
    wait_for_status(browser, "Thread thr_")
    wait_for(browser, lambda b: ANSWER in widget_text(b))

    send_recap_form(browser, "Sam")

    error = "The transcript was recorded but the email could not be sent. It is kept and can be resent."
    assert wait_for_status(browser, "Recap not sent: ") == f"Recap not sent: {error}"
    # ChatKit shows the same error in the thread.
    wait_for(browser, lambda b: error in widget_text(b))
    transcript = Transcript.objects.get()
    assert (transcript.status, transcript.name) == (TranscriptStatus.FAILED, "Sam")
    assert ses.sent() == []
    assert not any(line.startswith("Recap sent") for line in status_lines(browser))
    # The form can be sent again.
    assert browser.find_element(By.CSS_SELECTOR, "#recap-form button").is_enabled()


def test_self_hosted_recap_refused_by_a_rate_limit_shows_the_status(
    try_it, fake_responses, browser, ses, settings
):
    # The thread's first message is the one ChatKit request this address may make.
    settings.RATE_LIMIT_CHATKIT_REQUESTS_PER_IP = (1, 3600)
    browser.get(try_it)
    chat(browser, "Hello?")
    wait_for_status(browser, "Thread thr_")

    send_recap_form(browser)

    refusal = wait_for_status(browser, "Recap not sent: ")
    assert refusal.startswith(
        "Recap not sent: HTTP 429: Too many requests: at most 1 ChatKit requests from one address per hour."
    )
    assert Transcript.objects.count() == 0
    assert ses.sent() == []


def attach(browser: WebDriver, path: Path) -> None:
    widget = browser.find_element(By.ID, "chatkit").shadow_root
    widget.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(path))


def uploads(browser: WebDriver) -> list[dict[str, Any]]:
    return browser.execute_script("return window.chatkitStandIn.uploads;")


def test_self_hosted_file_the_server_refuses_is_never_uploaded_and_the_refusal_shows(
    try_it, fake_responses, browser, settings, tmp_path
):
    browser.get(try_it)
    wait_for_status(browser, "ChatKit talks to /api/chatkit")

    assert "Attachments: on." in browser.find_element(By.ID, "setup").text

    # A file the server refuses is announced, refused, never uploaded, and the refusal shown.
    notes = tmp_path / "notes.txt"
    notes.write_text("Not an image or a PDF.")
    attach(browser, notes)

    assert wait_for_status(browser, "ChatKit reported an error: ") == (
        "ChatKit reported an error: HTTP 400: Files of type text/plain cannot be attached. "
        "Allowed: image/png, image/jpeg, image/gif, image/webp, application/pdf."
    )
    assert protocol_requests(browser) == ["attachments.create"]
    assert uploads(browser) == []
    assert ChatKitAttachment.objects.count() == 0


def test_self_hosted_visitor_attaches_an_image_that_reaches_the_model_and_the_recap(
    try_it, fake_responses, browser, ses, settings, tmp_path, live_server
):
    stored = tmp_path / "stored"
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit_attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(stored)},
        },
    }
    picture = tmp_path / "pad.png"
    picture.write_bytes(PNG)
    browser.get(try_it)
    wait_for_status(browser, "ChatKit talks to /api/chatkit")

    # Announced (attachments.create), then uploaded as the reply's upload descriptor says.
    attach(browser, picture)
    [upload] = wait_for(browser, uploads)
    attachment = ChatKitAttachment.objects.get()
    assert upload["method"] == "PUT"
    assert upload["url"].startswith(
        f"{live_server.url}/api/chatkit/attachments/{attachment.id}/upload?token="
    )
    assert (upload["headers"], upload["size"], upload["status"]) == (
        {"Content-Type": "image/png"},
        len(PNG),
        200,
    )
    assert (stored / "attachments" / attachment.id).read_bytes() == PNG

    chat(browser, "What is this part?")
    wait_for(browser, lambda b: ANSWER in widget_text(b))

    assert protocol_requests(browser) == ["attachments.create", "threads.create"]
    [request] = fake_responses.requests
    [message] = [item for item in request["input"] if item.get("role") == "user"]
    image = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    assert {"type": "input_image", "detail": "auto", "image_url": image} in message["content"]
    thread_id = wait_for_status(browser, "Thread thr_").split()[1]
    assert ChatKitAttachment.objects.get().thread_id == thread_id

    requests = requests_sent(browser)
    [create, first_message] = chatkit_calls(requests, live_server)
    assert json.loads(create.body or "")["params"] == {
        "name": "pad.png",
        "size": len(PNG),
        "mime_type": "image/png",
    }
    assert json.loads(first_message.body or "")["params"]["input"]["attachments"] == [attachment.id]
    # The upload went as ChatKit sent it: the page's fetch adds its header to ChatKit's calls only.
    [put] = [r for r in requests if r.method == "PUT"]
    assert put.url == upload["url"]
    assert "x-page-url" not in put.headers

    # The recap lists the file where the visitor sent it.
    send_recap_form(browser, "Sam")
    assert wait_for_status(browser, "Recap sent")
    [staff_mail] = ses.sent()
    assert f"User: What is this part?\nAttachments: pad.png (image/png, {len(PNG)} bytes)" in staff_mail.text
    screenshot(browser, "try-it-page-attachment.png")


def test_self_hosted_upload_goes_from_the_page_straight_to_the_bucket(
    try_it, fake_responses, bucket, moto_server, browser, live_server, tmp_path
):
    """With a bucket the browser PUTs the file to S3 itself, on another origin, by the presigned
    URL, under the CORS rules template.yaml gives the bucket: without the visitor cookie or the
    page's X-Page-URL, which those rules do not allow."""
    s3 = s3_client(moto_server)
    s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedMethods": ["PUT", "GET"],
                    "AllowedOrigins": [live_server.url],
                    "AllowedHeaders": ["content-type", "x-amz-tagging"],
                }
            ]
        },
    )
    picture = tmp_path / "pad.png"
    picture.write_bytes(PNG)
    browser.get(try_it)
    wait_for_status(browser, "ChatKit talks to /api/chatkit")

    attach(browser, picture)
    [upload] = wait_for(browser, uploads)
    attachment = ChatKitAttachment.objects.get()
    assert upload["url"].startswith(f"{moto_server}/{bucket}/{attachment.file}?")
    assert (upload["method"], upload["status"]) == ("PUT", 200)
    assert s3.get_object(Bucket=bucket, Key=attachment.file)["Body"].read() == PNG
    [put] = [r for r in requests_sent(browser) if r.method == "PUT"]
    assert put.headers["origin"] == live_server.url
    assert "cookie" not in put.headers
    assert "x-page-url" not in put.headers

    chat(browser, "What is this part?")
    wait_for(browser, lambda b: ANSWER in widget_text(b))
    [request] = fake_responses.requests
    [message] = [item for item in request["input"] if item.get("role") == "user"]
    image = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    assert {"type": "input_image", "detail": "auto", "image_url": image} in message["content"]


SITE_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Shop</title></head>
<body>
<h1>Brakes and tyres</h1>
{snippet}
</body>
</html>
"""


def test_the_self_hosted_snippet_works_pasted_into_a_site_page(
    live_server, fake_responses, browser, ses, settings, chatkit_script
):
    """The "On your site" snippet, as the page shows it, pasted into a page of the site: another
    origin than the API's (another port), listed in CORS_ALLOWED_ORIGINS."""
    settings.TRY_IT_PAGE_ENABLED = True
    settings.CHATKIT_SCRIPT_URL = chatkit_script.url
    settings.VISITOR_COOKIE_SECURE = False
    settings.CORS_ALLOWED_ORIGINS = [chatkit_script.site_origin]
    settings.SES_TO_EMAIL = [STAFF]
    settings.DEFAULT_FROM_EMAIL = "Chat Bot <chat@shop.example>"
    browser.get(f"{live_server.url}/")
    snippet = browser.execute_script("return document.getElementById('snippet').textContent;")
    chatkit_script.pages["/brakes"] = SITE_PAGE.format(snippet=snippet)
    site_page = f"{chatkit_script.site_origin}/brakes"

    browser.get(site_page)
    wait_for(browser, lambda b: b.execute_script("return window.chatkitStandIn.options !== null;"))
    chat(browser, "My front brakes squeal.")
    wait_for(browser, lambda b: ANSWER in widget_text(b))
    browser.execute_script(
        "window.recapsSent = [];"
        "document.getElementById('chatkit').addEventListener('chatkit.effect', (event) => {"
        "  window.recapsSent.push(event.detail); });"
        "return window.sendRecap("
        "  { name: 'Sam', email: 'sam@visitor.example', vehicle: 'Golf', mode: 'quote' });"
    )

    [effect] = wait_for(browser, lambda b: b.execute_script("return window.recapsSent;"))
    transcript = Transcript.objects.get()
    assert effect == {"name": "recap_sent", "data": {"transcriptId": transcript.id, "mode": "quote"}}
    assert (transcript.name, transcript.vehicle, transcript.page_url) == ("Sam", "Golf", site_page)
    assert transcript.status == TranscriptStatus.SENT
    [staff_mail] = ses.sent()
    assert "User: My front brakes squeal." in staff_mail.text
    calls = chatkit_calls(requests_sent(browser), live_server)
    assert [json.loads(call.body or "")["type"] for call in calls] == [
        "threads.create",
        "threads.custom_action",
    ]
    for call in calls:
        assert call.headers["origin"] == chatkit_script.site_origin
        assert call.headers["x-page-url"] == site_page
    # The visitor cookie went with the action: the thread was theirs to mail.
    assert f"{settings.VISITOR_COOKIE_NAME}=" in calls[1].headers["cookie"]


def test_page_names_what_is_missing_and_shows_the_api_errors(try_it, browser, fake_chatkit, ses, settings):
    settings.CHATKIT_WORKFLOW_ID = ""
    settings.SES_TO_EMAIL = []
    browser.get(try_it)

    setup = browser.find_element(By.ID, "setup").text
    assert "Sessions cannot start: CHATKIT_WORKFLOW_ID is not set." in setup
    assert "Recaps cannot be sent: SES_TO_EMAIL is not set." in setup
    assert "Recaps go to staff only: a copy to the visitor needs ALLOW_USER_RECAP=true." in setup
    error = "HTTP 503: The service is not configured: CHATKIT_WORKFLOW_ID is not set."
    assert wait_for_status(browser, "Session not created: ") == f"Session not created: {error}"
    assert wait_for_status(browser, "ChatKit reported an error: ") == f"ChatKit reported an error: {error}"
    assert fake_chatkit.requests == []
    screenshot(browser, "try-it-page-not-configured.png")


def test_recap_of_a_thread_openai_does_not_know_shows_the_404(try_it, browser, fake_chatkit, ses):
    browser.get(try_it)
    wait_for_status(browser, "Session created")

    chat(browser, "Hello?")
    wait_for_status(browser, "Thread cthr_")
    browser.find_element(By.CSS_SELECTOR, "#recap-form button").click()

    assert wait_for_status(browser, "Recap not sent: ") == "Recap not sent: HTTP 404: Thread not found."
    assert Transcript.objects.count() == 0
    assert ses.sent() == []
    # The form can be sent again.
    assert browser.find_element(By.CSS_SELECTOR, "#recap-form button").is_enabled()


def test_page_says_when_chatkit_cannot_be_loaded(try_it, browser, settings):
    settings.CHATKIT_SCRIPT_URL = "http://127.0.0.1:9/chatkit.js"
    browser.get(try_it)

    assert wait_for_status(browser, "ChatKit's script could not be loaded") == (
        "ChatKit's script could not be loaded from http://127.0.0.1:9/chatkit.js. "
        "Is it reachable from this browser?"
    )


def test_api_docs_render_from_local_files(live_server, browser):
    browser.get(f"{live_server.url}/api/docs/")

    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    paths = {element.text for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert paths == {"/api/chatkit/session", "/api/chatkit/transcript"}
    fetched = [r.url for r in requests_sent(browser) if not r.url.startswith("data:")]
    assert f"{live_server.url}/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in fetched
    assert all(url.startswith(f"{live_server.url}/") for url in fetched), fetched
    screenshot(browser, "api-docs.png")
