"""Transcripts of self-hosted threads: the same rules and the same mail, read from the database."""

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from chatkit.types import (
    AssistantMessageItem,
    ClientToolCallItem,
    EndOfTurnItem,
    GeneratedImageItem,
    HiddenContextItem,
    SDKHiddenContextItem,
    StructuredInputItem,
    TaskItem,
    ThreadMetadata,
    UserMessageItem,
    WidgetItem,
    WorkflowItem,
)

from chatkit_api import chatkit_store
from chatkit_api.models import ChatKitThread, Transcript, TranscriptStatus
from chatkit_api.services import transcript_resend
from chatkit_site.lambda_handler import handler
from tests.chatkit_protocol import (
    ChatKitBrowser,
    assistant_texts,
    done_items,
    sse_events,
    thread_id_of,
    user_input,
)
from tests.conftest import STAFF, TOKEN
from tests.lambda_events import http_api_v2_event

pytestmark = pytest.mark.django_db

LEAD = {
    "name": "Zoë Brontë",
    "email": "zoe@visitor.example",
    "phone": "+44 20 7946 0000",
    "vehicle": "2019 Škoda Octavia",
    "details": "Front brakes squeal.",
    "pageUrl": "https://shop.example/quote",
}
WHEN = datetime(2026, 11, 25, 16, 49, tzinfo=UTC)


def conversation_of(mail_text):
    return mail_text.split("\n---\n\n", 1)[1].strip().split("\n\n")


def send_transcript(client, body, **headers):
    return client.post(
        "/api/chatkit/transcript", json.dumps(body), content_type="application/json", **headers
    )


# --- the "send recap" action --------------------------------------------------------


def test_send_recap_action_mails_the_thread_to_staff(self_hosted, ses):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("Hi, can I get a quote for front brakes?"))

    events = browser.stream(
        "threads.custom_action", thread_id=thread_id, action={"type": "send_recap", "payload": LEAD}
    )

    transcript = Transcript.objects.get()
    assert {
        "type": "client_effect",
        "name": "recap_sent",
        "data": {"transcriptId": transcript.id, "mode": "quote"},
    } in events
    assert not [event for event in events if event["type"] == "error"]
    # The note for the agent is stored but never sent to the widget.
    assert done_items(events) == []
    assert ChatKitThread.objects.get(pk=thread_id).items.filter(type="hidden_context_item").exists()
    assert transcript.thread_id == thread_id
    assert transcript.requested_by == "visitor"
    assert transcript.visitor_id == ChatKitThread.objects.get(pk=thread_id).visitor_id
    assert transcript.status == TranscriptStatus.SENT
    [mail] = ses.sent()
    assert mail.destinations == [STAFF]
    assert mail.message["Subject"] == "[Chat] Zoë Brontë - quote"
    assert mail.message["Reply-To"] == "zoe@visitor.example"
    assert mail.text.startswith("Mode: quote\nName: Zoë Brontë\nEmail: zoe@visitor.example\n")
    blocks = conversation_of(mail.text)
    assert [block.split("] ", 1)[1] for block in blocks] == [
        "User: Hi, can I get a quote for front brakes?",
        "Assistant: You said: Hi, can I get a quote for front brakes?",
    ]
    assert transcript.item_count == 2


def test_the_agent_learns_the_recap_was_sent(self_hosted, ses):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("hello"))
    browser.stream("threads.custom_action", thread_id=thread_id, action={"type": "send_recap", "payload": {}})

    browser.say("Did you get it?", thread_id)

    assert any("sent this conversation" in text for text in self_hosted.calls[-1].texts("user"))
    assert browser.call("items.list", thread_id=thread_id)["data"][0]["type"] == "assistant_message"
    assert [
        item["type"] for item in browser.call("items.list", thread_id=thread_id, order="asc")["data"]
    ] == [
        "user_message",
        "assistant_message",
        "user_message",
        "assistant_message",
    ]


def test_recap_mode_copies_the_visitor_when_allowed(self_hosted, ses, settings):
    settings.ALLOW_USER_RECAP = True
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("hello"))

    browser.stream(
        "threads.custom_action",
        thread_id=thread_id,
        action={"type": "send_recap", "payload": {**LEAD, "mode": "recap"}},
    )

    staff, visitor = ses.sent()
    assert staff.destinations == [STAFF]
    assert visitor.destinations == ["zoe@visitor.example"]
    assert visitor.message["Reply-To"] == settings.SES_REPLY_TO


def test_invalid_recap_details_are_an_error_event_and_nothing_is_sent(self_hosted, ses):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("hello"))

    events = browser.stream(
        "threads.custom_action",
        thread_id=thread_id,
        action={"type": "send_recap", "payload": {"email": "not-an-email", "name": "Bcc:\r\nx@y.z"}},
    )

    [error] = [event for event in events if event["type"] == "error"]
    assert error["code"] == "custom"
    assert "email:" in error["message"] and "name:" in error["message"]
    assert not Transcript.objects.exists()
    assert ses.sent() == []


def test_a_recap_that_cannot_be_mailed_is_recorded_and_says_so(self_hosted, ses, settings):
    settings.DEFAULT_FROM_EMAIL = "unverified@elsewhere.example"
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("hello"))

    events = browser.stream(
        "threads.custom_action", thread_id=thread_id, action={"type": "send_recap", "payload": LEAD}
    )

    [error] = [event for event in events if event["type"] == "error"]
    assert "recorded" in error["message"]
    assert error["allow_retry"] is True
    assert Transcript.objects.get().status == TranscriptStatus.FAILED


# --- the transcript endpoint and resends ---------------------------------------------


def test_transcript_endpoint_mails_a_self_hosted_thread_with_the_visitor_cookie(self_hosted, ses, settings):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("Can you fit pads on Tuesday?"))
    settings.OPENAI_API_KEY = ""  # reading a self-hosted thread calls nothing at OpenAI

    response = send_transcript(browser.client, {"threadId": thread_id, **LEAD})

    assert response.status_code == 200
    assert response.json() == {"ok": True, "id": Transcript.objects.get().id}
    [mail] = ses.sent()
    assert "User: Can you fit pads on Tuesday?" in mail.text
    assert "Assistant: You said: Can you fit pads on Tuesday?" in mail.text


def test_transcript_endpoint_with_the_server_token(self_hosted, ses):
    thread_id = thread_id_of(ChatKitBrowser().say("hello"))

    response = send_transcript(
        ChatKitBrowser().client, {"threadId": thread_id}, HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )

    assert response.status_code == 200
    assert Transcript.objects.get().requested_by == "server"
    assert len(ses.sent()) == 1


def test_an_unknown_self_hosted_thread_is_a_404(self_hosted, ses):
    response = send_transcript(
        ChatKitBrowser().client, {"threadId": "thr_missing"}, HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )

    assert response.status_code == 404
    assert not Transcript.objects.exists()


def test_self_hosted_transcripts_need_only_the_staff_inbox(self_hosted, settings):
    settings.SES_TO_EMAIL = []

    response = send_transcript(
        ChatKitBrowser().client, {"threadId": "thr_x"}, HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )

    assert response.status_code == 503
    assert response.json()["missing"] == ["SES_TO_EMAIL"]


def test_resend_with_refetch_reads_the_thread_from_the_database_again(self_hosted, ses, settings):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("first"))
    browser.stream(
        "threads.custom_action", thread_id=thread_id, action={"type": "send_recap", "payload": LEAD}
    )
    browser.say("second", thread_id)
    settings.OPENAI_API_KEY = ""

    transcript = transcript_resend(transcript=Transcript.objects.get(), refetch=True)

    assert transcript.item_count == 4
    first, again = ses.sent()
    assert "User: second" not in first.text
    assert [block.split("] ", 1)[1] for block in conversation_of(again.text)] == [
        "User: first",
        "Assistant: You said: first",
        "User: second",
        "Assistant: You said: second",
    ]
    assert again.message["Subject"] == first.message["Subject"]


# --- every item shape the SDK stores, rendered on purpose ------------------------------


def _stored_thread(items):
    thread = ThreadMetadata(id="thr_shapes", created_at=WHEN)
    chatkit_store.thread_save(visitor_id="visitor_shapes", thread=thread)
    for item in items:
        chatkit_store.item_save(visitor_id="visitor_shapes", thread_id=thread.id, item=item)
    return thread.id


def test_each_self_hosted_item_type_is_rendered_on_purpose(self_hosted, ses):
    common = {"thread_id": "thr_shapes", "created_at": WHEN}
    items = [
        UserMessageItem.model_validate(
            {
                **common,
                "id": "msg_1",
                "content": [
                    {"type": "input_text", "text": "Book "},
                    {"type": "input_tag", "id": "svc_1", "text": "Brake check", "data": {}},
                    {"type": "input_text", "text": " for me"},
                ],
                "quoted_text": "From £89",
                "attachments": [
                    {"type": "file", "id": "atc_1", "name": "invoice.pdf", "mime_type": "application/pdf"}
                ],
                "inference_options": {},
            }
        ),
        AssistantMessageItem.model_validate(
            {
                **common,
                "id": "msg_2",
                "content": [
                    {
                        "text": "See our prices.",
                        "annotations": [
                            {
                                "source": {
                                    "type": "url",
                                    "url": "https://shop.example/prices",
                                    "title": "Prices",
                                }
                            },
                            {"source": {"type": "file", "filename": "brochure.pdf", "title": "Brochure"}},
                            {"source": {"type": "entity", "id": "svc_1", "title": "Brake check"}},
                        ],
                    }
                ],
            }
        ),
        WidgetItem.model_validate(
            {
                **common,
                "id": "msg_3",
                "widget": {
                    "type": "Card",
                    "children": [
                        {"type": "Title", "value": "Brake service"},
                        {"type": "Text", "value": "From £89"},
                        {"type": "Button", "label": "Book now"},
                    ],
                },
            }
        ),
        WidgetItem.model_validate(
            {
                **common,
                "id": "msg_4",
                "widget": {"type": "Card", "children": [{"type": "Text", "value": "Tue 10:00"}]},
                "copy_text": "Slot offered: Tuesday 10:00",
            }
        ),
        ClientToolCallItem.model_validate(
            {
                **common,
                "id": "tc_1",
                "call_id": "call_1",
                "name": "open_booking_form",
                "arguments": {"service": "brakes"},
                "status": "completed",
                "output": {"slot": "Tue 10:00"},
            }
        ),
        TaskItem.model_validate(
            {
                **common,
                "id": "tsk_1",
                "task": {"type": "custom", "title": "Checked stock", "content": "Pads in stock"},
            }
        ),
        TaskItem.model_validate(
            {
                **common,
                "id": "tsk_2",
                "task": {
                    "type": "web_search",
                    "title": "Searched",
                    "queries": ["octavia brake pads"],
                    "sources": [{"type": "url", "url": "https://parts.example/pads", "title": "Pads"}],
                },
            }
        ),
        WorkflowItem.model_validate(
            {
                **common,
                "id": "wf_1",
                "workflow": {
                    "type": "reasoning",
                    "tasks": [{"type": "thought", "content": "The visitor wants a Tuesday slot."}],
                    "summary": {"duration": 3},
                },
            }
        ),
        WorkflowItem.model_validate(
            {
                **common,
                "id": "wf_2",
                "workflow": {
                    "type": "custom",
                    "tasks": [{"type": "custom", "title": "Quote prepared"}],
                    "summary": {"title": "Preparing your quote"},
                },
            }
        ),
        StructuredInputItem.model_validate(
            {
                **common,
                "id": "msg_5",
                "status": "answered",
                "inputs": [
                    {
                        "type": "multiple_choice",
                        "id": "q1",
                        "question": "Which axle?",
                        "options": [{"value": "Front"}, {"value": "Rear"}],
                        "answer": {"values": ["Front"]},
                    },
                    {
                        "type": "freeform",
                        "id": "q2",
                        "question": "Anything else?",
                        "answer": {"skipped": True},
                    },
                    {"type": "freeform", "id": "q3", "question": "Mileage?"},
                ],
            }
        ),
        GeneratedImageItem.model_validate(
            {**common, "id": "msg_6", "image": {"id": "img_1", "url": "data:image/png;base64,AAAA"}}
        ),
        GeneratedImageItem.model_validate(
            {**common, "id": "msg_7", "image": {"id": "img_2", "url": "https://cdn.example/pads.png"}}
        ),
        HiddenContextItem.model_validate(
            {**common, "id": "msg_8", "content": "The visitor is on the quote page."}
        ),
        SDKHiddenContextItem.model_validate(
            {**common, "id": "shcx_1", "content": "The user cancelled the stream."}
        ),
        EndOfTurnItem.model_validate({**common, "id": "msg_9"}),
    ]
    thread_id = _stored_thread(items)

    response = send_transcript(
        ChatKitBrowser().client, {"threadId": thread_id}, HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )

    assert response.status_code == 200
    [mail] = ses.sent()
    assert conversation_of(mail.text) == [
        "[2026-11-25 16:49 UTC] User: > From £89\nBook @Brake check for me\n"
        "Attachments: invoice.pdf (application/pdf)",
        "[2026-11-25 16:49 UTC] Assistant: See our prices.\n"
        "Sources: https://shop.example/prices, brochure.pdf, Brake check",
        "[2026-11-25 16:49 UTC] Widget (Card): Brake service · From £89 · Book now",
        "[2026-11-25 16:49 UTC] Widget (Card): Slot offered: Tuesday 10:00",
        "[2026-11-25 16:49 UTC] Tool call: open_booking_form (completed)\n"
        'Arguments: {"service": "brakes"}\n'
        'Output: {"slot": "Tue 10:00"}',
        "[2026-11-25 16:49 UTC] Task: [custom] Checked stock - Pads in stock",
        "[2026-11-25 16:49 UTC] Task: [web_search] Searched (searched: octavia brake pads)"
        " (sources: https://parts.example/pads)",
        "[2026-11-25 16:49 UTC] Reasoning: Worked for 3 s\n[thought] The visitor wants a Tuesday slot.",
        "[2026-11-25 16:49 UTC] Workflow: Preparing your quote\n[custom] Quote prepared",
        "[2026-11-25 16:49 UTC] Questions: Which axle?: Front\n"
        "Anything else?: (skipped)\n"
        "Mileage?: (not answered)",
        "[2026-11-25 16:49 UTC] Image: (image not included)",
        "[2026-11-25 16:49 UTC] Image: https://cdn.example/pads.png",
    ]
    assert Transcript.objects.get().item_count == 12
    assert "Reasoning" in mail.html and "cancelled" not in mail.html


def test_item_times_are_stored_in_utc_and_shown_in_the_configured_zone(self_hosted, ses, settings):
    settings.TIME_ZONE = "Europe/London"
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("hello"))
    stored = ChatKitThread.objects.get(pk=thread_id).items.first()
    assert stored.data["created_at"].endswith("+00:00")
    assert abs((stored.created_at - datetime.now(UTC)).total_seconds()) < 60

    send_transcript(browser.client, {"threadId": thread_id})

    [mail] = ses.sent()
    local = stored.created_at.astimezone(ZoneInfo("Europe/London"))
    assert f"[{local:%Y-%m-%d %H:%M} {local.tzname()}] User: hello" in mail.text


# --- the whole flow through the Lambda handler ----------------------------------------


# The handler is the real WSGI path, whose request signals recycle the database connection:
# the test commits like a real request instead of running inside a transaction.
@pytest.mark.django_db(transaction=True)
def test_a_conversation_and_its_recap_through_the_lambda_handler(self_hosted, ses, settings):
    # The widget is on the shop's site, the API on API Gateway's domain.
    settings.CORS_ALLOWED_ORIGINS = ["https://shop.example"]

    def call(body, cookies=None):
        event = http_api_v2_event(
            path="/api/chatkit", body=body, cookies=cookies, headers={"origin": "https://shop.example"}
        )
        return handler(event, None)

    created = call({"type": "threads.create", "params": {"input": user_input("Brakes on a 2019 Octavia?")}})

    assert created["statusCode"] == 200
    assert created["headers"]["content-type"] == "text/event-stream"
    # apig-wsgi cannot stream: the reply is one complete body.
    assert int(created["headers"]["content-length"]) == len(created["body"].encode())
    assert "x-accel-buffering" not in created["headers"]
    events = sse_events(created["body"].encode())
    assert assistant_texts(events) == ["You said: Brakes on a 2019 Octavia?"]
    [cookie] = created["cookies"]
    assert cookie.startswith(f"{settings.VISITOR_COOKIE_NAME}=")
    cookies = [cookie.split(";")[0]]
    thread_id = thread_id_of(events)

    listed = call({"type": "threads.list", "params": {}}, cookies)
    assert [thread["id"] for thread in json.loads(listed["body"])["data"]] == [thread_id]
    recap = call(
        {
            "type": "threads.custom_action",
            "params": {"thread_id": thread_id, "action": {"type": "send_recap", "payload": LEAD}},
        },
        cookies,
    )
    assert recap["statusCode"] == 200
    assert any(event["type"] == "client_effect" for event in sse_events(recap["body"].encode()))
    stranger = call({"type": "items.list", "params": {"thread_id": thread_id}})
    assert stranger["statusCode"] == 404

    [mail] = ses.sent()
    assert "User: Brakes on a 2019 Octavia?" in mail.text
