"""An answer is bounded and a thread stays consistent: deadlines, one answer per thread,
@-mention tags, times in UTC, and a rename during the first answer."""

import json
import threading
import time
from datetime import datetime

import pytest

from chatkit_api.chatkit_server import CUT_OFF, THREAD_BUSY, TIMED_OUT
from chatkit_api.models import ChatKitThread
from chatkit_site.lambda_handler import handler
from tests.chatkit_protocol import (
    ChatKitBrowser,
    assistant_texts,
    done_items,
    sse_events,
    thread_id_of,
    user_input,
)
from tests.fake_model import CallTool, Say, Stall, Wait
from tests.lambda_events import http_api_v2_event

pytestmark = pytest.mark.django_db


def request_body(type, **params):
    return json.dumps({"type": type, "params": params, "metadata": {}})


def items_of(thread_id):
    return list(ChatKitThread.objects.get(pk=thread_id).items.order_by("created_at", "id"))


# --- the deadline ------------------------------------------------------------------------


def test_a_tool_that_never_answers_is_stopped_at_the_deadline(self_hosted, settings):
    settings.CHATKIT_AGENT = "tests.chatkit_agents:calendar_agent"
    settings.CHATKIT_AGENT_TIMEOUT_SECONDS = 1
    self_hosted.script.append(CallTool("check_calendar", {"day": "Tuesday"}))

    events = ChatKitBrowser().say("Is Tuesday free?")

    assert {"type": "error", "code": "custom", "message": TIMED_OUT, "allow_retry": True} in events
    thread = ChatKitThread.objects.get(pk=thread_id_of(events))
    assert thread.running_until is None
    kinds = [item.type for item in items_of(thread.id)]
    assert kinds[0] == "user_message"
    assert "took too long" in items_of(thread.id)[-1].data["content"]


def test_a_model_that_hangs_mid_answer_leaves_the_answer_kept_and_marked(self_hosted, settings):
    settings.CHATKIT_AGENT_TIMEOUT_SECONDS = 1
    self_hosted.script.append(Stall("Front pads usually cost"))
    browser = ChatKitBrowser()

    events = browser.say("How much for pads?")

    assert events[-1] == {"type": "error", "code": "custom", "message": TIMED_OUT, "allow_retry": True}
    thread_id = thread_id_of(events)
    [user, partial, note] = items_of(thread_id)
    assert user.type == "user_message"
    assert partial.type == "assistant_message"
    assert (
        "".join(part["text"] for part in partial.data["content"]) == f"Front pads usually cost\n\n{CUT_OFF}"
    )
    assert note.type == "sdk_hidden_context"
    # The next message is answered, and the agent knows the last answer was cut off.
    browser.say("Still there?", thread_id)
    assert "took too long" in self_hosted.calls[-1].texts("user")[-2]


# The handler is the real WSGI path, whose request signals recycle the database connection:
# the test commits like a real request instead of running inside a transaction.
@pytest.mark.django_db(transaction=True)
def test_an_answer_sent_whole_through_api_gateway_ends_within_the_request_time_budget(self_hosted, settings):
    settings.CHATKIT_AGENT_TIMEOUT_SECONDS = 60
    settings.REQUEST_TIME_BUDGET_SECONDS = 3
    settings.CORS_ALLOWED_ORIGINS = ["https://shop.example"]
    self_hosted.script.append(Stall("Front pads usually cost"))
    event = http_api_v2_event(
        path="/api/chatkit",
        body={"type": "threads.create", "params": {"input": user_input("How much for pads?")}},
        headers={"origin": "https://shop.example"},
    )

    started = time.monotonic()
    reply = handler(event, None)
    seconds = time.monotonic() - started

    events = sse_events(reply["body"].encode())
    assert events[-1] == {"type": "error", "code": "custom", "message": TIMED_OUT, "allow_retry": True}
    assert seconds < settings.REQUEST_TIME_BUDGET_SECONDS


# --- one answer per thread ------------------------------------------------------------------


def test_a_second_message_while_the_first_is_answered_is_refused_and_stores_nothing(self_hosted):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("first question"))
    release = threading.Event()
    self_hosted.script.append(Wait(release, then=Say("the answer")))

    async def meanwhile(response):
        chunks = aiter(response.streaming_content)
        await anext(chunks)
        second = await browser.async_client.post(
            "/api/chatkit",
            request_body(
                "threads.add_user_message", thread_id=thread_id, input=user_input("second question")
            ),
            content_type="application/json",
            headers=browser.headers,
        )
        release.set()
        return second, b"".join([chunk async for chunk in chunks])

    _, (second, rest) = browser.post_reading(
        request_body("threads.add_user_message", thread_id=thread_id, input=user_input("next question")),
        meanwhile,
    )

    assert second.status_code == 409
    assert second.json() == {"error": THREAD_BUSY}
    assert assistant_texts(sse_events(rest)) == ["the answer"]
    texts = [
        "".join(part["text"] for part in item.data["content"])
        for item in items_of(thread_id)
        if item.type in ("user_message", "assistant_message")
    ]
    assert texts == ["first question", "You said: first question", "next question", "the answer"]
    assert ChatKitThread.objects.get(pk=thread_id).running_until is None
    # Once the answer is done, the thread takes the next message.
    assert assistant_texts(browser.say("second question", thread_id)) == ["You said: second question"]


def test_a_message_on_a_thread_being_created_waits_its_turn(self_hosted):
    browser = ChatKitBrowser()
    release = threading.Event()
    self_hosted.script.append(Wait(release, then=Say("hello back")))

    async def meanwhile(response):
        chunks = aiter(response.streaming_content)
        created = sse_events(await anext(chunks))[0]
        second = await browser.async_client.post(
            "/api/chatkit",
            request_body(
                "threads.add_user_message", thread_id=created["thread"]["id"], input=user_input("and?")
            ),
            content_type="application/json",
            headers=browser.headers,
        )
        release.set()
        [chunk async for chunk in chunks]
        return second

    _, second = browser.post_reading(request_body("threads.create", input=user_input("hello")), meanwhile)

    assert second.status_code == 409


def test_another_visitors_thread_is_still_a_404(self_hosted):
    thread_id = thread_id_of(ChatKitBrowser().say("mine"))

    response = ChatKitBrowser().post("threads.add_user_message", thread_id=thread_id, input=user_input("hi"))

    assert response.status_code == 404


# --- what the widget sends and gets -----------------------------------------------------------


def test_an_at_mention_reaches_the_model_and_the_thread_goes_on(self_hosted):
    browser = ChatKitBrowser()
    tagged = {
        "content": [
            {"type": "input_text", "text": "Can I book "},
            {
                "type": "input_tag",
                "id": "svc_brakes",
                "text": "Brake service",
                "data": {"price": "£89"},
                "interactive": True,
            },
            {"type": "input_text", "text": " on Tuesday?"},
        ],
        "attachments": [],
        "quoted_text": None,
        "inference_options": {},
    }

    events = sse_events(browser.post_body(request_body("threads.create", input=tagged)).streamed_body)
    browser.say("And the week after?", thread_id_of(events))

    first, second = self_hosted.calls
    assert first.texts("user")[0] == "Can I book @Brake service on Tuesday?"
    assert any('@Brake service: {"price": "\\u00a389"}' in text for text in first.texts("user"))
    assert second.texts("user")[-1] == "And the week after?"


def test_an_unknown_content_part_is_refused_and_stores_nothing(self_hosted):
    strange = {
        "content": [{"type": "input_audio", "data": "..."}],
        "attachments": [],
        "inference_options": {},
    }

    response = ChatKitBrowser().post("threads.create", input=strange)

    assert response.status_code == 400
    assert "input_audio" in response.json()["error"]
    assert not ChatKitThread.objects.exists()


def test_streamed_times_are_utc_like_the_stored_ones(self_hosted):
    browser = ChatKitBrowser()

    events = browser.say("hello")
    reloaded = browser.call("threads.get_by_id", thread_id=thread_id_of(events))

    streamed = [events[0]["thread"]["created_at"], *(item["created_at"] for item in done_items(events))]
    stored = [reloaded["created_at"], *(item["created_at"] for item in reloaded["items"]["data"])]
    for moment in streamed + stored:
        assert datetime.fromisoformat(moment).utcoffset().total_seconds() == 0, moment
    assert streamed == stored


def test_a_rename_during_the_first_answer_sticks(self_hosted):
    browser = ChatKitBrowser()
    release = threading.Event()
    self_hosted.script.append(Wait(release, then=Say("Sure.")))

    async def rename_meanwhile(response):
        chunks = aiter(response.streaming_content)
        created = sse_events(await anext(chunks))[0]
        thread_id = created["thread"]["id"]
        renamed = await browser.async_client.post(
            "/api/chatkit",
            request_body("threads.update", thread_id=thread_id, title="Brakes for the Golf"),
            content_type="application/json",
            headers=browser.headers,
        )
        release.set()
        return thread_id, renamed, sse_events(b"".join([chunk async for chunk in chunks]))

    _, (thread_id, renamed, rest) = browser.post_reading(
        request_body("threads.create", input=user_input("Hi, I need brakes")), rename_meanwhile
    )

    assert renamed.status_code == 200
    assert ChatKitThread.objects.get(pk=thread_id).title == "Brakes for the Golf"
    assert browser.call("threads.get_by_id", thread_id=thread_id)["title"] == "Brakes for the Golf"
    assert assistant_texts(rest) == ["Sure."]
