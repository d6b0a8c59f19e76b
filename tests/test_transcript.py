import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from chatkit_api.models import EmailAudience, Transcript, TranscriptEmail, TranscriptStatus
from chatkit_api.services import transcript_resend
from tests.conftest import STAFF, TOKEN
from tests.fake_chatkit import (
    API_KEY,
    BASE_TIME,
    assistant_message,
    client_tool_call,
    task,
    task_group,
    user_message,
    widget,
)

pytestmark = pytest.mark.django_db

TRANSCRIPT_URL = "/api/chatkit/transcript"
LEAD = {
    "name": "Zoë Brontë",
    "email": "zoe@visitor.example",
    "phone": "+44 20 7946 0000",
    "vehicle": "2019 Škoda Octavia",
    "details": "Front brakes squeal.\nAvailable Tuesdays.",
    "pageUrl": "https://shop.example/quote?ref=chat",
}


def server_client() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return client


def send(client, body):
    return client.post(TRANSCRIPT_URL, body, format="json")


def visitor_with_thread(fake_chatkit, items):
    """A browser that got its cookie from the session endpoint, and a thread it owns.

    Like a real browser on the API's own site, it sends that origin with every POST.
    """
    browser = APIClient(HTTP_ORIGIN="http://testserver")
    assert browser.post("/api/chatkit/session", {}, format="json").status_code == 200
    visitor_id = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")[-1].body["user"]
    return browser, fake_chatkit.add_thread(user=visitor_id, items=items)


def conversation(count):
    return [
        user_message(f"question {n}") if n % 2 == 0 else assistant_message(f"answer {n}")
        for n in range(count)
    ]


def test_server_caller_mails_the_transcript_through_ses(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(
        user="visitor_abc",
        items=[user_message("Hi, brakes quote please?"), assistant_message("Sure, which car?")],
    )

    response = send(server_client(), {"threadId": thread.id, "mode": "quote", **LEAD})

    assert response.status_code == 200
    transcript = Transcript.objects.get()
    assert response.json() == {"ok": True, "id": transcript.id}
    [mail] = ses.sent()
    assert mail.destinations == [STAFF]
    assert mail.message["To"] == STAFF
    assert mail.message["From"] == "Chat Bot <chat@shop.example>"
    assert mail.message["Reply-To"] == "zoe@visitor.example"
    assert mail.message["Subject"] == "[Chat] Zoë Brontë - quote"
    assert mail.text.startswith(
        "Mode: quote\n"
        "Name: Zoë Brontë\n"
        "Email: zoe@visitor.example\n"
        "Phone: +44 20 7946 0000\n"
        "Vehicle: 2019 Škoda Octavia\n"
        "Details: Front brakes squeal.\n  Available Tuesdays.\n"
        "Page: https://shop.example/quote?ref=chat\n"
        "\n---\n\n"
    )
    assert "User: Hi, brakes quote please?" in mail.text
    assert "Assistant: Sure, which car?" in mail.text
    assert transcript.status == TranscriptStatus.SENT
    assert transcript.visitor_id == "visitor_abc"
    assert transcript.requested_by == "server"
    assert transcript.recipients == [STAFF]
    assert transcript.item_count == 2
    assert transcript.attempts == 1
    assert transcript.sent_at is not None
    [email] = transcript.emails.all()
    assert email.ses_message_id == mail.message_id
    assert email.status == TranscriptStatus.SENT


def test_html_alternative_is_escaped_and_readable(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(
        user="visitor_abc", items=[user_message("<script>alert('x')</script> & <b>bold</b>")]
    )

    send(server_client(), {"threadId": thread.id, "name": "<img src=x onerror=alert(1)>"})

    [mail] = ses.sent()
    assert mail.message.get_content_type() == "multipart/alternative"
    html = mail.html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in html


def test_defaults_without_lead_details(fake_chatkit, ses, settings):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hello")])

    assert send(server_client(), {"threadId": thread.id}).status_code == 200

    [mail] = ses.sent()
    assert mail.message["Subject"] == "[Chat] Website visitor - quote"
    assert mail.message["Reply-To"] == settings.SES_REPLY_TO
    assert mail.text.startswith(
        "Mode: quote\nName: —\nEmail: —\nPhone: —\nVehicle: —\nDetails: —\nPage: —\n\n---\n\n"
    )


def test_every_page_is_fetched_in_order(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=conversation(250))

    assert send(server_client(), {"threadId": thread.id}).status_code == 200

    pages = fake_chatkit.requests_to("GET", f"/v1/chatkit/threads/{thread.id}/items")
    assert [page.query.get("after") for page in pages] == [
        None,
        thread.items[99]["id"],
        thread.items[199]["id"],
    ]
    assert all(page.query["limit"] == "100" and page.query["order"] == "asc" for page in pages)
    [mail] = ses.sent()
    positions = [mail.text.index(f"{'question' if n % 2 == 0 else 'answer'} {n}\n") for n in range(250)]
    assert positions == sorted(positions)
    assert Transcript.objects.get().item_count == 250


def test_ten_thousand_messages_arrive_whole(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=conversation(10_000))

    assert send(server_client(), {"threadId": thread.id}).status_code == 200

    assert len(fake_chatkit.requests_to("GET", f"/v1/chatkit/threads/{thread.id}/items")) == 100
    transcript = Transcript.objects.get()
    assert transcript.item_count == 10_000
    assert "answer 9999\n" in transcript.body_text
    assert transcript.body_text.count("User: question") == 5_000
    assert transcript.body_text.count("Assistant: answer") == 5_000


def test_each_item_type_is_rendered_on_purpose(fake_chatkit, ses):
    items = [
        user_message(
            "Can you check this invoice?", quoted="Total: £120", attachments=["invoice.pdf", "car.jpg"]
        ),
        assistant_message("See our prices page.", urls=["https://shop.example/prices"]),
        widget(
            {
                "type": "Card",
                "children": [
                    {"type": "Title", "value": "Brake service"},
                    {"type": "Text", "value": "From £89"},
                    {"type": "Button", "label": "Book now", "onClickAction": {"type": "book"}},
                ],
            }
        ),
        client_tool_call("send_recap", {"email": "zoe@visitor.example"}, output={"ok": True}),
        task("Looking up availability", "Tuesday 10:00 is free"),
        task_group(("Checked parts", "Pads in stock"), ("Checked calendar", "Two slots")),
        {"type": "chatkit.something_new", "payload": "?"},
    ]
    thread = fake_chatkit.add_thread(user="visitor_abc", items=items)

    send(server_client(), {"threadId": thread.id})

    [mail] = ses.sent()
    conversation_text = mail.text.split("\n---\n\n", 1)[1]
    blocks = conversation_text.strip().split("\n\n")
    assert blocks == [
        "[2025-11-24 16:00 UTC] User: > Total: £120\n"
        "Can you check this invoice?\n"
        "Attachments: invoice.pdf (application/pdf), car.jpg (application/pdf)",
        "[2025-11-24 16:00 UTC] Assistant: See our prices page.\nSources: https://shop.example/prices",
        "[2025-11-24 16:00 UTC] Widget (Card): Brake service · From £89 · Book now",
        "[2025-11-24 16:00 UTC] Tool call: send_recap (completed)\n"
        'Arguments: {"email": "zoe@visitor.example"}\n'
        'Output: {"ok": true}',
        "[2025-11-24 16:00 UTC] Task: [custom] Looking up availability - Tuesday 10:00 is free",
        "[2025-11-24 16:00 UTC] Tasks: [thought] Checked parts - Pads in stock\n"
        "[thought] Checked calendar - Two slots",
        "[2025-11-24 16:00 UTC] Unsupported item (chatkit.something_new): (not shown)",
    ]
    assert "Widget (Card)" in mail.html
    assert "Unsupported item (chatkit.something_new)" in mail.html


def test_timestamps_follow_the_configured_time_zone(fake_chatkit, ses, settings):
    settings.TIME_ZONE = "America/New_York"
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hello")])
    assert thread.items[0]["created_at"] == BASE_TIME

    send(server_client(), {"threadId": thread.id})

    [mail] = ses.sent()
    assert "[2025-11-24 11:00 EST] User: hello" in mail.text
    assert "2025-11-24 11:00 EST" in mail.html


def test_unicode_survives_in_subject_body_and_html(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("Привет 👋 — ça va? 日本語")])

    send(server_client(), {"threadId": thread.id, "name": "Jürgen 王"})

    [mail] = ses.sent()
    assert mail.message["Subject"] == "[Chat] Jürgen 王 - quote"
    assert "User: Привет 👋 — ça va? 日本語" in mail.text
    assert "Привет 👋 — ça va? 日本語" in mail.html


def test_empty_thread_says_so(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])

    send(server_client(), {"threadId": thread.id})

    [mail] = ses.sent()
    assert mail.text.endswith("---\n\n(The conversation has no messages.)\n")


# --- visitor recap ---------------------------------------------------------------


def test_recap_sends_the_visitor_a_copy_when_allowed(fake_chatkit, ses, settings):
    settings.ALLOW_USER_RECAP = True
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])

    response = send(server_client(), {"threadId": thread.id, "mode": "recap", **LEAD})

    assert response.status_code == 200
    staff_mail, visitor_mail = ses.sent()
    assert staff_mail.destinations == [STAFF]
    assert staff_mail.message["Reply-To"] == "zoe@visitor.example"
    assert visitor_mail.destinations == ["zoe@visitor.example"]
    assert visitor_mail.message["To"] == "zoe@visitor.example"
    # Replying to the copy reaches the business, not the visitor themselves.
    assert visitor_mail.message["Reply-To"] == settings.SES_REPLY_TO
    # Fixed: nothing the visitor typed reaches a header of the copy.
    assert visitor_mail.message["Subject"] == "A copy of your conversation with us"
    transcript = Transcript.objects.get()
    assert transcript.visitor_copy is True
    assert transcript.recipients == [STAFF, "zoe@visitor.example"]
    assert [email.audience for email in transcript.emails.all()] == [
        EmailAudience.STAFF,
        EmailAudience.VISITOR,
    ]


@pytest.mark.parametrize(
    ("allow", "mode", "email"),
    [(False, "recap", "zoe@visitor.example"), (True, "quote", "zoe@visitor.example"), (True, "recap", "")],
)
def test_no_visitor_copy_unless_allowed_recap_with_email(fake_chatkit, ses, settings, allow, mode, email):
    settings.ALLOW_USER_RECAP = allow
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])

    send(server_client(), {"threadId": thread.id, "mode": mode, "email": email})

    [mail] = ses.sent()
    assert mail.destinations == [STAFF]
    assert Transcript.objects.get().visitor_copy is False


def test_several_staff_addresses(fake_chatkit, ses, settings):
    settings.SES_TO_EMAIL = [STAFF, "owner@shop.example"]
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])

    send(server_client(), {"threadId": thread.id})

    [mail] = ses.sent()
    assert mail.destinations == [STAFF, "owner@shop.example"]


# --- who may call ------------------------------------------------------------------


def test_visitor_mails_their_own_thread(fake_chatkit, ses):
    browser, thread = visitor_with_thread(fake_chatkit, [user_message("my own chat")])

    response = send(browser, {"threadId": thread.id, **LEAD})

    assert response.status_code == 200
    transcript = Transcript.objects.get()
    assert transcript.requested_by == "visitor"
    assert transcript.visitor_id == thread.user
    assert "User: my own chat" in ses.sent()[0].text


def test_visitor_cannot_mail_someone_elses_thread(fake_chatkit, ses):
    browser, _ = visitor_with_thread(fake_chatkit, [])
    other = fake_chatkit.add_thread(user="visitor_someone_else", items=[user_message("private")])

    response = send(browser, {"threadId": other.id, **LEAD})

    assert response.status_code == 404
    assert response.json() == {"error": "Thread not found."}
    assert fake_chatkit.requests_to("GET", f"/v1/chatkit/threads/{other.id}/items") == []
    assert Transcript.objects.count() == 0
    assert ses.sent() == []


def test_someone_elses_thread_looks_like_a_missing_one(fake_chatkit, ses):
    browser, _ = visitor_with_thread(fake_chatkit, [])
    other = fake_chatkit.add_thread(user="visitor_someone_else", items=[])

    someone_elses = send(browser, {"threadId": other.id})
    missing = send(browser, {"threadId": "cthr_does_not_exist"})

    assert (someone_elses.status_code, someone_elses.json()) == (missing.status_code, missing.json())


def test_unknown_thread_is_a_404(fake_chatkit, ses):
    response = send(server_client(), {"threadId": "cthr_missing"})

    assert response.status_code == 404
    assert response.json() == {"error": "Thread not found."}
    assert Transcript.objects.count() == 0


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"],
)
def test_without_valid_credentials_nothing_is_fetched(fake_chatkit, ses, authorization):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("secret")])
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)

    response = send(client, {"threadId": thread.id})

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="transcript"'
    assert "error" in response.json()
    assert fake_chatkit.requests == []
    assert Transcript.objects.count() == 0
    assert ses.sent() == []


def test_token_access_is_off_when_no_token_is_configured(fake_chatkit, ses, settings):
    settings.TRANSCRIPT_API_TOKEN = ""
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer ")

    assert send(client, {"threadId": thread.id}).status_code == 401
    assert fake_chatkit.requests == []


def test_forged_visitor_cookie_is_not_a_credential(fake_chatkit, ses, settings):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    client = APIClient()
    client.cookies[settings.VISITOR_COOKIE_NAME] = "visitor_abc"

    assert send(client, {"threadId": thread.id}).status_code == 401
    assert fake_chatkit.requests == []


# --- failures that must lose nothing -----------------------------------------------


def test_ses_failure_is_recorded_then_resendable(fake_chatkit, ses, settings):
    settings.DEFAULT_FROM_EMAIL = "unverified@shop.example"
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("please call me")])

    response = send(server_client(), {"threadId": thread.id, **LEAD})

    transcript = Transcript.objects.get()
    assert response.status_code == 502
    assert response.json() == {
        "error": "The transcript was recorded but the email could not be sent. It is kept and can be resent.",
        "id": transcript.id,
    }
    assert transcript.status == TranscriptStatus.FAILED
    assert "MessageRejected" in transcript.error
    assert "User: please call me" in transcript.body_text
    assert transcript.name == "Zoë Brontë"
    assert ses.sent() == []

    ses.client.verify_email_identity(EmailAddress="unverified@shop.example")
    requests_before = len(fake_chatkit.requests)
    transcript_resend(transcript=transcript)

    transcript.refresh_from_db()
    assert transcript.status == TranscriptStatus.SENT
    assert transcript.error == ""
    assert transcript.attempts == 2
    # The stored text was sent; OpenAI was not asked again.
    assert len(fake_chatkit.requests) == requests_before
    [mail] = ses.sent()
    assert "User: please call me" in mail.text
    failed, sent = transcript.emails.all()
    assert (failed.status, sent.status) == (TranscriptStatus.FAILED, TranscriptStatus.SENT)
    assert sent.ses_message_id == mail.message_id


def test_openai_failure_while_reading_items_keeps_the_lead(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hello again")])
    fake_chatkit.fail(
        "GET", f"/v1/chatkit/threads/{thread.id}/items", 503, {"error": {"message": "overloaded"}}
    )

    response = send(server_client(), {"threadId": thread.id, **LEAD})

    assert response.status_code == 502
    assert response.json() == {
        "error": "OpenAI answered HTTP 503 while reading the thread's messages. Try again later."
    }
    transcript = Transcript.objects.get()
    assert transcript.status == TranscriptStatus.FAILED
    assert transcript.phone == LEAD["phone"]
    assert ses.sent() == []

    fake_chatkit.failures.clear()
    transcript_resend(transcript=transcript)

    transcript.refresh_from_db()
    assert transcript.status == TranscriptStatus.SENT
    assert "User: hello again" in ses.sent()[0].text


def test_openai_failure_before_the_owner_check_records_nothing(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    fake_chatkit.fail(
        "GET", f"/v1/chatkit/threads/{thread.id}", 500, {"error": {"message": "boom " + API_KEY}}
    )

    response = send(server_client(), {"threadId": thread.id})

    assert response.status_code == 502
    assert API_KEY not in response.content.decode()
    assert "boom" not in response.content.decode()
    assert Transcript.objects.count() == 0


def test_resend_refetch_reads_the_thread_again(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("first")])
    send(server_client(), {"threadId": thread.id})
    thread.items.append(
        {
            **user_message("added later"),
            "id": "cthi_late",
            "thread_id": thread.id,
            "created_at": BASE_TIME + 60,
        }
    )

    transcript_resend(transcript=Transcript.objects.get(), refetch=True)

    first, second = ses.sent()
    assert "added later" not in first.text
    assert "User: added later" in second.text


def test_resend_to_a_chosen_address_does_not_count_as_delivery(fake_chatkit, ses, settings):
    settings.DEFAULT_FROM_EMAIL = "unverified@shop.example"
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])
    send(server_client(), {"threadId": thread.id})
    ses.client.verify_email_identity(EmailAddress="unverified@shop.example")
    transcript = Transcript.objects.get()

    transcript_resend(transcript=transcript, to=["ops@shop.example"])

    [mail] = ses.sent()
    assert mail.destinations == ["ops@shop.example"]
    transcript.refresh_from_db()
    assert transcript.status == TranscriptStatus.FAILED
    assert transcript.emails.last().audience == EmailAudience.OVERRIDE


def test_resend_only_repeats_the_message_that_failed(fake_chatkit, ses, settings):
    settings.ALLOW_USER_RECAP = True
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])
    send(server_client(), {"threadId": thread.id, "mode": "recap", "email": "zoe@visitor.example"})
    transcript = Transcript.objects.get()
    # The visitor's copy bounced off SES; staff got theirs.
    TranscriptEmail.objects.filter(audience=EmailAudience.VISITOR).update(status=TranscriptStatus.FAILED)
    Transcript.objects.filter(pk=transcript.pk).update(status=TranscriptStatus.FAILED)
    transcript.refresh_from_db()

    transcript_resend(transcript=transcript)

    assert [mail.destinations for mail in ses.sent()] == [
        [STAFF],
        ["zoe@visitor.example"],
        ["zoe@visitor.example"],
    ]


# --- bad input ---------------------------------------------------------------------

LINE_BREAKS = ["\r\n", "\n", "\r", "\x00", "\u2028", "\u2029", "\x85", "\x0b"]


@pytest.mark.parametrize("field", ["name", "email", "phone", "vehicle", "mode", "pageUrl"])
@pytest.mark.parametrize("line_break", LINE_BREAKS)
def test_line_breaks_in_header_and_single_line_fields_are_rejected(fake_chatkit, ses, field, line_break):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    value = {"email": "a@b.example", "mode": "recap"}.get(field, "value")
    body = {"threadId": thread.id, field: f"{value}{line_break}Bcc: victim@evil.example"}

    response = send(server_client(), body)

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert fake_chatkit.requests == []
    assert Transcript.objects.count() == 0
    assert ses.sent() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "threadId"),
        ({"threadId": ""}, "threadId"),
        ({"threadId": None}, "threadId"),
        ({"threadId": "../sessions"}, "threadId"),
        ({"threadId": "c" * 129}, "threadId"),
        ({"threadId": {"id": "cthr_1"}}, "threadId"),
        ({"threadId": "cthr_1", "email": "not-an-email"}, "email"),
        ({"threadId": "cthr_1", "email": "a@b.example, c@d.example"}, "email"),
        ({"threadId": "cthr_1", "name": "n" * 201}, "name"),
        ({"threadId": "cthr_1", "phone": "1" * 51}, "phone"),
        ({"threadId": "cthr_1", "vehicle": "v" * 201}, "vehicle"),
        ({"threadId": "cthr_1", "details": "d" * 5001}, "details"),
        ({"threadId": "cthr_1", "details": "nul\x00byte"}, "details"),
        ({"threadId": "cthr_1", "mode": "quote please"}, "mode"),
        ({"threadId": "cthr_1", "mode": "m" * 33}, "mode"),
        ({"threadId": "cthr_1", "pageUrl": "https://x.example/" + "p" * 2000}, "pageUrl"),
        ({"threadId": "cthr_1", "pageUrl": 0}, "pageUrl"),
        ({"threadId": "cthr_1", "name": ["Zoë"]}, "name"),
        ({"threadId": "cthr_1", "details": {"text": "x"}}, "details"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(fake_chatkit, ses, body, field):
    response = send(server_client(), body)

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert f"{field}:" in response.json()["error"]
    assert fake_chatkit.requests == []
    assert Transcript.objects.count() == 0


def test_multi_line_details_are_kept(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])

    assert (
        send(server_client(), {"threadId": thread.id, "details": "line one\r\nline two"}).status_code == 200
    )
    assert "line one" in ses.sent()[0].text


@pytest.mark.parametrize(
    "malformed",
    [
        {"type": "chatkit.user_message", "content": 5},
        {"type": "chatkit.assistant_message", "content": [{"type": "output_text", "text": 5}]},
        {"type": "chatkit.task_group", "tasks": "not a list"},
    ],
    ids=["content-not-a-list", "text-a-number", "tasks-not-a-list"],
)
def test_items_that_cannot_be_read_are_a_502_and_the_rest_is_kept(fake_chatkit, ses, malformed):
    thread = fake_chatkit.add_thread(
        user="visitor_abc",
        items=[user_message("Pads for a Golf?"), malformed, assistant_message("£89 fitted.")],
    )

    response = send(server_client(), {"threadId": thread.id, "name": "Sam"})

    assert response.status_code == 502
    assert "1 item(s) of the thread could not be read" in response.json()["error"]
    assert ses.sent() == []
    transcript = Transcript.objects.get()
    assert transcript.status == TranscriptStatus.FAILED
    assert "could not be read" in transcript.error
    assert transcript.sending_since is None
    assert "Pads for a Golf?" in transcript.body_text
    assert "£89 fitted." in transcript.body_text
    assert "Unreadable item" in transcript.body_text


def test_malformed_json_is_a_400(fake_chatkit, ses):
    response = server_client().post(TRANSCRIPT_URL, '{"threadId": ', content_type="application/json")

    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    assert Transcript.objects.count() == 0


def test_deeply_nested_json_is_a_400(fake_chatkit, ses, caplog):
    response = server_client().post(TRANSCRIPT_URL, "[" * 1000 + "]" * 1000, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"error": "JSON parse error - the body is nested too deeply."}
    assert Transcript.objects.count() == 0
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []


def test_unauthenticated_bad_input_is_a_401_not_a_400(fake_chatkit):
    response = APIClient().post(TRANSCRIPT_URL, "{broken", content_type="application/json")

    assert response.status_code == 401


@pytest.mark.parametrize(("setting", "empty"), [("OPENAI_API_KEY", ""), ("SES_TO_EMAIL", [])])
def test_missing_configuration_is_a_503(fake_chatkit, ses, settings, setting, empty):
    setattr(settings, setting, empty)

    response = send(server_client(), {"threadId": "cthr_1"})

    assert response.status_code == 503
    assert f"{setting} is not set" in response.json()["error"]
    assert fake_chatkit.requests == []
    assert Transcript.objects.count() == 0


def test_a_service_that_cannot_send_says_so_before_asking_who_calls(fake_chatkit, settings):
    settings.SES_TO_EMAIL = []

    response = APIClient().post(TRANSCRIPT_URL, {"threadId": "cthr_1"}, format="json")

    assert response.status_code == 503
    assert response.json()["missing"] == ["SES_TO_EMAIL"]


def test_a_multi_line_details_cannot_pass_for_a_header_line(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hello")])

    send(server_client(), {"threadId": thread.id, "details": "Front brakes.\nPage: https://evil.example"})

    [mail] = ses.sent()
    header = mail.text.split("\n---\n", 1)[0].splitlines()
    assert header[5:] == ["Details: Front brakes.", "  Page: https://evil.example", "Page: —"]


def test_transcript_send_query_count_does_not_grow_with_the_thread(fake_chatkit, ses):
    small = fake_chatkit.add_thread(user="visitor_abc", items=conversation(3))
    large = fake_chatkit.add_thread(user="visitor_abc", items=conversation(300))

    counts = []
    for thread in (small, large):
        with CaptureQueriesContext(connection) as queries:
            assert send(server_client(), {"threadId": thread.id}).status_code == 200
        counts.append(len(queries))

    assert counts[0] == counts[1]


def test_console_backend_prints_the_mail_when_ses_is_not_configured(fake_chatkit, settings, capsys):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("printed")])

    assert send(server_client(), {"threadId": thread.id}).status_code == 200

    printed = capsys.readouterr().out
    assert "Subject: [Chat] Website visitor - quote" in printed
    assert Transcript.objects.get().status == TranscriptStatus.SENT
    assert json.loads(json.dumps(Transcript.objects.get().recipients)) == [STAFF]
    assert re.search(r"To: leads@shop\.example", printed)
