"""`POST /api/chatkit`: the real openai-chatkit server and Agents SDK, driven like the widget does."""

import asyncio
import json
import threading
from contextlib import suppress

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from chatkit_api import openai_gateway
from chatkit_api.chatkit_server import HEARTBEAT, _answer
from chatkit_api.models import ChatKitThread, ChatKitThreadItem
from tests.chatkit_agents import INSTRUCTIONS
from tests.chatkit_protocol import (
    CHATKIT_URL,
    ChatKitBrowser,
    assistant_texts,
    body_of,
    done_items,
    sse_events,
    thread_id_of,
    user_input,
)
from tests.fake_model import CallTool, Fail, Say, Wait
from tests.fake_responses import ANSWER

pytestmark = pytest.mark.django_db


def test_first_message_creates_a_thread_the_agent_answers(self_hosted, settings):
    browser = ChatKitBrowser()

    response = browser.post("threads.create", input=user_input("Hi, can I get a quote for front brakes?"))

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/event-stream"
    cookie = response.cookies[settings.VISITOR_COOKIE_NAME]
    assert cookie["httponly"] and cookie["path"] == "/api/chatkit"
    events = sse_events(body_of(response))
    assert [event["type"] for event in events[:3]] == ["thread.created", "thread.item.done", "stream_options"]
    assert assistant_texts(events) == ["You said: Hi, can I get a quote for front brakes?"]
    deltas = [
        event["update"]["delta"]
        for event in events
        if event["type"] == "thread.item.updated" and "delta" in event["update"]
    ]
    assert "".join(deltas) == "You said: Hi, can I get a quote for front brakes?"
    assert len(deltas) > 1

    thread = ChatKitThread.objects.get(pk=thread_id_of(events))
    assert thread.visitor_id == browser.client.cookies[settings.VISITOR_COOKIE_NAME].value.split(":")[0]
    assert thread.title == "Hi, can I get a quote for front brakes?"
    assert list(thread.items.values_list("type", flat=True)) == ["user_message", "assistant_message"]
    [call] = self_hosted.calls
    assert call.instructions == INSTRUCTIONS
    assert call.texts("user") == ["Hi, can I get a quote for front brakes?"]
    assert call.tool_names == ["open_booking_form"]


def test_next_message_continues_the_thread_with_its_history(self_hosted):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("Front brakes squeal."))
    self_hosted.script.append(Say("Which car is it?"))

    events = browser.say("How much for pads?", thread_id)

    assert events[0]["type"] == "thread.item.done"
    assert events[0]["item"]["content"] == [{"type": "input_text", "text": "How much for pads?"}]
    assert assistant_texts(events) == ["Which car is it?"]
    history = self_hosted.calls[-1]
    assert history.texts("user") == ["Front brakes squeal.", "How much for pads?"]
    assert history.texts("assistant") == ["You said: Front brakes squeal."]
    assert ChatKitThreadItem.objects.filter(thread_id=thread_id).count() == 4


def test_list_threads_newest_first_in_pages(self_hosted):
    browser = ChatKitBrowser()
    first = thread_id_of(browser.say("first question"))
    second = thread_id_of(browser.say("second question"))

    page = browser.call("threads.list", limit=1)
    assert [thread["id"] for thread in page["data"]] == [second]
    assert page["data"][0]["title"] == "second question"
    assert page["has_more"] is True

    rest = browser.call("threads.list", limit=1, after=page["after"])
    assert [thread["id"] for thread in rest["data"]] == [first]
    assert rest["has_more"] is False
    assert [t["id"] for t in browser.call("threads.list", order="asc")["data"]] == [first, second]


def test_load_a_thread_and_its_items(self_hosted):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("Do you fit tyres?"))
    browser.say("And alignment?", thread_id)

    thread = browser.call("threads.get_by_id", thread_id=thread_id)
    assert thread["id"] == thread_id
    assert [item["type"] for item in thread["items"]["data"]] == ["user_message", "assistant_message"] * 2

    page = browser.call("items.list", thread_id=thread_id, limit=3, order="asc")
    texts = [item["content"][0]["text"] for item in page["data"]]
    assert texts == ["Do you fit tyres?", "You said: Do you fit tyres?", "And alignment?"]
    assert page["has_more"] is True
    rest = browser.call("items.list", thread_id=thread_id, limit=3, order="asc", after=page["after"])
    assert [item["content"][0]["text"] for item in rest["data"]] == ["You said: And alignment?"]
    newest = browser.call("items.list", thread_id=thread_id, limit=1, order="desc")
    assert newest["data"][0]["content"][0]["text"] == "You said: And alignment?"


def test_rename_and_delete_a_thread(self_hosted):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("hello"))

    assert browser.call("threads.update", thread_id=thread_id, title="Brakes")["title"] == "Brakes"
    assert ChatKitThread.objects.get(pk=thread_id).title == "Brakes"

    assert browser.call("threads.delete", thread_id=thread_id) == {}
    assert not ChatKitThread.objects.exists()
    assert not ChatKitThreadItem.objects.exists()


def test_retry_replaces_the_answer_after_a_message(self_hosted):
    browser = ChatKitBrowser()
    events = browser.say("hello")
    thread_id = thread_id_of(events)
    [message] = [item for item in done_items(events) if item["type"] == "user_message"]
    self_hosted.script.append(Say("A better answer."))

    retried = browser.stream("threads.retry_after_item", thread_id=thread_id, item_id=message["id"])

    assert assistant_texts(retried) == ["A better answer."]
    items = browser.call("items.list", thread_id=thread_id, order="asc")["data"]
    assert [item["content"][0]["text"] for item in items] == ["hello", "A better answer."]


def test_client_tool_call_waits_for_the_browser_and_resumes_with_its_result(self_hosted):
    browser = ChatKitBrowser()
    self_hosted.script.append(CallTool("open_booking_form", {"service": "brakes"}))

    events = browser.say("I want to book a brake check")

    [tool_call] = [item for item in done_items(events) if item["type"] == "client_tool_call"]
    assert tool_call["name"] == "open_booking_form"
    assert tool_call["arguments"] == {"service": "brakes"}
    assert tool_call["status"] == "pending"
    assert assistant_texts(events) == []
    thread_id = thread_id_of(events)

    self_hosted.script.append(Say("Booked for Tuesday at 10:00."))
    resumed = browser.stream(
        "threads.add_client_tool_output", thread_id=thread_id, result={"slot": "Tue 10:00"}
    )

    assert assistant_texts(resumed) == ["Booked for Tuesday at 10:00."]
    stored = ChatKitThreadItem.objects.get(thread_id=thread_id, type="client_tool_call")
    assert stored.data["status"] == "completed"
    assert stored.data["output"] == {"slot": "Tue 10:00"}
    # The model saw its call and the browser's answer to it.
    outputs = [item for item in self_hosted.calls[-1].input if item.get("type") == "function_call_output"]
    assert [json.loads(item["output"]) for item in outputs] == [{"slot": "Tue 10:00"}]


def test_tool_output_when_no_tool_call_waits_is_a_400(self_hosted):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("hello"))

    response = browser.post("threads.add_client_tool_output", thread_id=thread_id, result={})

    assert response.status_code == 400
    assert "does not apply" in response.json()["error"]
    assert ChatKitThreadItem.objects.filter(thread_id=thread_id).count() == 2


# --- two visitors -----------------------------------------------------------------


def test_one_visitor_cannot_see_or_touch_another_visitors_threads(self_hosted, ses):
    alice, mallory = ChatKitBrowser(), ChatKitBrowser()
    thread_id = thread_id_of(alice.say("My address is 1 Long Road"))
    item_id = ChatKitThreadItem.objects.filter(thread_id=thread_id).first().item_id
    mallory.say("hello")
    calls_before = len(self_hosted.calls)

    assert [t["id"] for t in mallory.call("threads.list")["data"]] != [thread_id]
    assert thread_id not in {t["id"] for t in mallory.call("threads.list", limit=100)["data"]}
    attempts = [
        mallory.post("threads.get_by_id", thread_id=thread_id),
        mallory.post("items.list", thread_id=thread_id),
        mallory.post("threads.add_user_message", thread_id=thread_id, input=user_input("mine now")),
        mallory.post("threads.update", thread_id=thread_id, title="stolen"),
        mallory.post("threads.delete", thread_id=thread_id),
        mallory.post("threads.retry_after_item", thread_id=thread_id, item_id=item_id),
        mallory.post(
            "threads.custom_action",
            thread_id=thread_id,
            action={"type": "send_recap", "payload": {"email": "mallory@evil.example"}},
        ),
        mallory.post("threads.list", after=thread_id),
    ]
    mail_attempt = mallory.client.post(
        "/api/chatkit/transcript",
        {"threadId": thread_id, "email": "mallory@evil.example", "mode": "recap"},
        content_type="application/json",
    )

    assert [response.status_code for response in attempts] == [404] * len(attempts)
    assert all(response.json()["error"].startswith("Not found") for response in attempts)
    assert mail_attempt.status_code == 404
    assert ses.sent() == []
    thread = ChatKitThread.objects.get(pk=thread_id)
    assert thread.title == "My address is 1 Long Road"
    assert thread.items.count() == 2
    assert len(self_hosted.calls) == calls_before
    assert alice.call("threads.get_by_id", thread_id=thread_id)["id"] == thread_id


def test_a_forged_cookie_is_a_new_visitor(self_hosted, settings):
    alice = ChatKitBrowser()
    thread_id = thread_id_of(alice.say("hello"))
    forger = ChatKitBrowser()
    visitor_id = ChatKitThread.objects.get(pk=thread_id).visitor_id
    forger.client.cookies[settings.VISITOR_COOKIE_NAME] = visitor_id

    assert forger.post("threads.get_by_id", thread_id=thread_id).status_code == 404
    assert forger.call("threads.list")["data"] == []


# --- streaming, buffering, Lambda -------------------------------------------------


def create_body(text):
    return json.dumps({"type": "threads.create", "params": {"input": user_input(text)}, "metadata": {}})


def test_events_reach_the_client_while_the_agent_is_still_working(self_hosted):
    release = threading.Event()
    self_hosted.script.append(Wait(release, then=Say("Done thinking.")))

    async def read(response):
        chunks = aiter(response.streaming_content)
        first = sse_events(await anext(chunks))
        answered_before_release = release.is_set()
        release.set()
        return first, answered_before_release, b"".join([chunk async for chunk in chunks])

    _, (first, answered_before_release, rest) = ChatKitBrowser().post_reading(create_body("hello"), read)

    assert first[0]["type"] == "thread.created"
    assert not answered_before_release
    assert assistant_texts(sse_events(rest)) == ["Done thinking."]


def test_a_silent_agent_keeps_the_connection_with_comments(self_hosted, settings):
    settings.CHATKIT_STREAM_HEARTBEAT_SECONDS = 1
    release = threading.Event()
    self_hosted.script.append(Wait(release, then=Say("There you are.")))

    async def read(response):
        chunks = []
        async for chunk in response.streaming_content:
            chunks.append(chunk)
            if chunk == HEARTBEAT:
                release.set()
        return chunks

    _, chunks = ChatKitBrowser().post_reading(create_body("hello"), read)

    assert HEARTBEAT in chunks
    events = sse_events(b"".join(chunk for chunk in chunks if chunk != HEARTBEAT))
    assert assistant_texts(events) == ["There you are."]


@pytest.mark.django_db(transaction=True)
def test_client_leaving_mid_answer_stops_the_run_and_records_it(self_hosted):
    async def leave(response):
        started = asyncio.Event()

        async def send():
            async for chunk in response.streaming_content:
                if b"stream_options" in chunk:
                    started.set()

        # What Django's ASGI handler does when the browser goes away: it cancels the task that
        # sends the response.
        sender = asyncio.create_task(send())
        await started.wait()
        # Mid-answer: the model has been asked and is still writing.
        while len(self_hosted.calls) < calls_before + 1:
            await asyncio.sleep(0.01)
        sender.cancel()
        with suppress(asyncio.CancelledError):
            await sender
        return [repr(task)[:200] for task in asyncio.all_tasks() if task is not asyncio.current_task()]

    for _ in range(2):
        self_hosted.script.append(Wait(threading.Event(), then=Say("never sent")))
        calls_before = len(self_hosted.calls)
        _, left_running = ChatKitBrowser().post_reading(create_body("hello"), leave)
        # Nothing of the run goes on: no task is left on the loop.
        assert left_running == []

    assert ChatKitThread.objects.count() == 2
    for thread in ChatKitThread.objects.all():
        items = list(thread.items.values_list("type", flat=True))
        assert items == ["user_message", "sdk_hidden_context"]
        assert "cancelled" in thread.items.get(type="sdk_hidden_context").data["content"]
        assert thread.running_until is None
    assert len(self_hosted.calls) == 2


def test_without_streaming_the_same_events_come_back_whole(self_hosted, settings):
    settings.CHATKIT_STREAM_RESPONSES = False
    browser = ChatKitBrowser()

    response = browser.post("threads.create", input=user_input("hello"))

    assert response.status_code == 200
    assert not response.streaming
    assert response["Content-Type"] == "text/event-stream"
    assert int(response["Content-Length"]) == len(response.content)
    events = sse_events(response.content)
    assert events[0]["type"] == "thread.created"
    assert assistant_texts(events) == ["You said: hello"]


def test_under_wsgi_an_answer_closes_its_openai_client_with_its_event_loop(fake_responses):
    # A WSGI server (apig-wsgi on Lambda) runs each request on an event loop of its own; a
    # client kept past it would hold connections no loop can use or close.
    response = Client(HTTP_ORIGIN="http://testserver").post(
        CHATKIT_URL,
        json.dumps({"type": "threads.create", "params": {"input": user_input("Pads?")}}),
        content_type="application/json",
    )

    assert response.status_code == 200
    assert assistant_texts(sse_events(response.content)) == [ANSWER]
    assert len(fake_responses.connections) == 1
    assert openai_gateway._async_clients == {}


def test_streamed_replies_ask_proxies_not_to_buffer(self_hosted):
    response = ChatKitBrowser(HTTP_ACCEPT="text/event-stream").post("threads.create", input=user_input("hi"))

    assert response.status_code == 200
    assert response["X-Accel-Buffering"] == "no"
    assert response["Cache-Control"] == "no-cache"
    body_of(response)


def test_a_failing_model_becomes_an_error_event_and_the_message_is_kept(self_hosted, caplog):
    self_hosted.script.append(Fail("model exploded"))
    browser = ChatKitBrowser()

    events = browser.say("hello")

    assert {"type": "error", "code": "stream.error", "allow_retry": True} in events
    thread = ChatKitThread.objects.get(pk=thread_id_of(events))
    assert list(thread.items.values_list("type", flat=True)) == ["user_message"]
    assert "model exploded" in caplog.text


# --- refused requests ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "Invalid ChatKit request."),
        (b"[]", "Invalid ChatKit request."),
        (json.dumps({"type": "threads.explode", "params": {}}).encode(), "Invalid ChatKit request."),
        (json.dumps({"type": "threads.create", "params": {}}).encode(), "params.input"),
        (
            json.dumps(
                {"type": "attachments.create", "params": {"name": "a.pdf", "size": 1, "mime_type": "x"}}
            ).encode(),
            "Files of type x cannot be attached",
        ),
        (
            json.dumps(
                {"type": "input.transcribe", "params": {"audio_base64": "", "mime_type": "audio/webm"}}
            ).encode(),
            "not supported",
        ),
    ],
)
def test_bad_requests_are_a_400_and_change_nothing(self_hosted, body, expected):
    response = ChatKitBrowser().client.post(CHATKIT_URL, body, content_type="application/json")

    assert response.status_code == 400
    assert expected in response.json()["error"]
    assert not ChatKitThread.objects.exists()
    assert self_hosted.calls == []


def test_a_too_long_title_is_a_400(self_hosted):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("hello"))

    response = browser.post("threads.update", thread_id=thread_id, title="x" * 201)

    assert response.status_code == 400
    assert "params.title" in response.json()["error"]
    assert ChatKitThread.objects.get(pk=thread_id).title == "hello"


def test_an_oversized_body_is_a_413(self_hosted, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = ChatKitBrowser().post("threads.create", input=user_input("x" * 2000))

    assert response.status_code == 413
    assert response.json() == {"error": "The request body is too large."}
    assert not ChatKitThread.objects.exists()


def test_an_unknown_action_is_an_error_event(self_hosted):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("hello"))

    events = browser.stream(
        "threads.custom_action", thread_id=thread_id, action={"type": "launch", "payload": {}}
    )

    assert events[-1] == {
        "type": "error",
        "code": "custom",
        "message": "This action is not supported.",
        "allow_retry": False,
    }


def test_managed_mode_does_not_serve_the_chatkit_endpoint(fake_chatkit):
    response = ChatKitBrowser().post("threads.list")

    assert response.status_code == 404
    assert "CHATKIT_MODE=managed" in response.json()["error"]
    assert "chatkit_visitor" not in response.cookies


def test_self_hosted_mode_has_no_sessions(self_hosted, fake_chatkit, api):
    response = api.post("/api/chatkit/session", {}, format="json")

    assert response.status_code == 404
    assert "/api/chatkit" in response.json()["error"]
    assert "CHATKIT_MODE=self_hosted" in response.json()["error"]
    assert not response.cookies
    assert fake_chatkit.requests == []


def test_without_an_api_key_it_is_a_503_naming_it(self_hosted, settings):
    settings.OPENAI_API_KEY = ""

    response = ChatKitBrowser().post("threads.create", input=user_input("hello"))

    assert response.status_code == 503
    assert response.json()["missing"] == ["OPENAI_API_KEY"]
    assert not ChatKitThread.objects.exists()


@pytest.mark.parametrize(
    "agent",
    ["tests.chatkit_agents:missing", "tests.nowhere:agent", "tests.chatkit_agents:not_an_agent", "nonsense"],
)
def test_an_agent_setting_that_names_no_agent_is_a_503(self_hosted, settings, agent):
    settings.CHATKIT_AGENT = agent

    response = ChatKitBrowser().post("threads.create", input=user_input("hello"))

    assert response.status_code == 503
    assert "CHATKIT_AGENT" in response.json()["error"]
    assert not ChatKitThread.objects.exists()


def test_the_agent_setting_may_name_an_agent_object(self_hosted, settings):
    settings.CHATKIT_AGENT = "tests.chatkit_agents.agent_instance"

    assert assistant_texts(ChatKitBrowser().say("hi")) == ["You said: hi"]
    assert self_hosted.calls[-1].tool_names == []


def test_a_failure_after_the_first_event_ends_the_stream_with_an_error_event(caplog):
    finished = []

    async def events():
        yield b"data: {}\n\n"
        raise RuntimeError("database went away")

    async def finish():
        finished.append(True)

    async def read():
        stream = _answer(b'data: {"type":"thread.created"}\n\n', events(), finish)
        return [chunk async for chunk in stream]

    chunks = async_to_sync(read)()

    assert sse_events(b"".join(chunks))[-1] == {"type": "error", "code": "stream.error", "allow_retry": True}
    assert "database went away" in caplog.text
    assert finished == [True]


@pytest.mark.parametrize("origin", [None, "https://evil.example", "null"])
def test_a_page_on_another_site_is_refused_before_anything_runs(self_hosted, origin):
    headers = {"HTTP_ORIGIN": origin} if origin else {}
    client = Client(**headers)

    response = client.post(
        CHATKIT_URL,
        json.dumps({"type": "threads.create", "params": {"input": user_input("spend their tokens")}}),
        content_type="application/json",
    )

    assert response.status_code == 403
    expected = "CORS_ALLOWED_ORIGINS" if origin else "needs the Origin header"
    assert expected in response.json()["error"]
    assert ChatKitThread.objects.count() == 0


def test_a_listed_origin_is_served(self_hosted, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://shop.example"]

    response = ChatKitBrowser(HTTP_ORIGIN="https://shop.example").post("threads.list")

    assert response.status_code == 200


def test_requests_from_one_address_are_limited(self_hosted, settings):
    settings.RATE_LIMIT_CHATKIT_REQUESTS_PER_IP = (2, 3600)
    browser = ChatKitBrowser()

    statuses = [browser.post("threads.list").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
