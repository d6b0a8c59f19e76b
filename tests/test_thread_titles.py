"""Thread titles from a small model (CHATKIT_TITLE_MODEL), through the real `openai` client to
the fake Responses API, beside the default agent's answer. The ASGI server's side, where the
loop outlives the request, is in test_asgi_server.py."""

import json
import logging
import threading
import time

import pytest
from django.test import Client

from chatkit_api import openai_gateway, thread_titles
from chatkit_api.models import ChatKitThread
from chatkit_api.thread_titles import TITLE_INSTRUCTIONS
from tests.chatkit_protocol import (
    CHATKIT_URL,
    ChatKitBrowser,
    assistant_texts,
    sse_events,
    thread_id_of,
    user_input,
)
from tests.fake_responses import ANSWER, TITLE

pytestmark = pytest.mark.django_db

QUESTION = "Hi, can I get a quote for new front brake pads on my 2015 Golf?"
SHORT_TITLE = "Hi, can I get a quote for new front brake pads on my 2015 G…"


@pytest.fixture
def title_model(fake_responses, settings):
    settings.CHATKIT_TITLE_MODEL = "gpt-4.1-nano"
    return fake_responses


def titles_shown(events: list[dict]) -> list[str]:
    return [event["thread"]["title"] for event in events if event["type"] == "thread.updated"]


def wsgi_ask(text: str) -> tuple[list[dict], float]:
    """A first message as a WSGI server (apig-wsgi on Lambda) serves it: on an event loop of the
    request's own, the events whole; the events and the seconds the reply took."""
    started = time.monotonic()
    response = Client(HTTP_ORIGIN="http://testserver").post(
        CHATKIT_URL,
        json.dumps({"type": "threads.create", "params": {"input": user_input(text)}}),
        content_type="application/json",
    )
    assert response.status_code == 200
    return sse_events(response.content), time.monotonic() - started


def test_the_title_model_titles_the_thread_after_its_first_answer(title_model):
    browser = ChatKitBrowser()

    events = browser.say(QUESTION)

    thread_id = thread_id_of(events)
    assert assistant_texts(events) == [ANSWER]
    assert ChatKitThread.objects.get(pk=thread_id).title == TITLE
    assert ChatKitThread.objects.get(pk=thread_id).data["title"] == TITLE
    [request] = title_model.title_requests
    assert request["model"] == "gpt-4.1-nano"
    assert request["instructions"] == TITLE_INSTRUCTIONS
    assert request["input"] == QUESTION
    assert request["store"] is False
    # The widget's history lists it; later answers ask for no other title.
    assert browser.call("threads.list")["data"][0]["title"] == TITLE
    browser.say("Front and rear, please.", thread_id)
    assert len(title_model.title_requests) == 1
    assert ChatKitThread.objects.get(pk=thread_id).title == TITLE


def test_a_title_ready_while_the_answer_streams_reaches_the_widget_in_it(title_model):
    # A model that takes a while to answer: the title is written long before its last word.
    title_model.first_delta_seconds = 0.3
    title_model.delta_interval_seconds = 0.01

    events = ChatKitBrowser().say(QUESTION)

    assert titles_shown(events) == [SHORT_TITLE, TITLE]
    shown_at = next(n for n, event in enumerate(events) if titles_shown([event]) == [TITLE])
    last_word_at = max(n for n, event in enumerate(events) if event["type"] == "thread.item.updated")
    assert shown_at < last_word_at


def test_without_a_title_model_the_first_message_stays_the_title(fake_responses):
    events, _ = wsgi_ask(QUESTION)

    assert titles_shown(events) == [SHORT_TITLE]
    assert ChatKitThread.objects.get(pk=thread_id_of(events)).title == SHORT_TITLE
    assert fake_responses.title_requests == []


@pytest.mark.parametrize(
    ("status", "answer", "logged"),
    [
        (500, TITLE, "OpenAI answered HTTP 500 while writing a thread title"),
        (200, "", "OpenAI returned an unreadable answer"),
        (200, '"."', "the title model answered no title"),
    ],
)
def test_a_failing_title_model_leaves_the_short_title(title_model, caplog, status, answer, logged):
    title_model.title_status = status
    title_model.title = answer

    with caplog.at_level(logging.WARNING, logger="chatkit_api"):
        events, _ = wsgi_ask(QUESTION)

    assert assistant_texts(events) == [ANSWER]
    assert titles_shown(events) == [SHORT_TITLE]
    assert ChatKitThread.objects.get(pk=thread_id_of(events)).title == SHORT_TITLE
    assert len(title_model.title_requests) == 1
    assert f"keeps its short title: {logged}" in caplog.text


def test_under_wsgi_a_slow_title_ends_with_the_request_and_leaves_nothing_running(
    title_model, caplog, monkeypatch
):
    monkeypatch.setattr(thread_titles, "SETTLE_SECONDS", 0.3)
    title_model.title_release = threading.Event()
    try:
        with caplog.at_level(logging.INFO, logger="chatkit_api"):
            events, seconds = wsgi_ask(QUESTION)
    finally:
        title_model.title_release.set()

    # The whole answer, after at most the short wait for the title, not the title model's pace.
    assert assistant_texts(events) == [ANSWER]
    assert seconds < 0.3 + 5
    assert ChatKitThread.objects.get(pk=thread_id_of(events)).title == SHORT_TITLE
    assert "its request ended before the title model answered" in caplog.text
    assert thread_titles._writing == set()
    assert openai_gateway._async_clients == {}


def test_a_name_the_visitor_gives_while_the_title_model_writes_is_kept(title_model, caplog):
    title_model.title_release = threading.Event()
    browser = ChatKitBrowser()

    async def rename_then_release(response) -> str:
        """The answer read to its end, the title still held back; the visitor renames the thread
        (as the widget's history does), then the title model answers."""
        thread_id = thread_id_of(sse_events(b"".join([chunk async for chunk in response.streaming_content])))
        assert len(title_model.title_requests) == 1
        assert not title_model.title_answered.is_set()
        renamed = await browser.async_client.post(
            CHATKIT_URL,
            json.dumps({"type": "threads.update", "params": {"thread_id": thread_id, "title": "My Golf"}}),
            content_type="application/json",
            headers=browser.headers,
        )
        assert renamed.status_code == 200
        title_model.title_release.set()
        return thread_id

    try:
        with caplog.at_level(logging.INFO, logger="chatkit_api"):
            _, thread_id = browser.post_reading(
                json.dumps({"type": "threads.create", "params": {"input": user_input(QUESTION)}}),
                rename_then_release,
            )
    finally:
        title_model.title_release.set()

    # The request's end waited for the title model's answer, which was not written.
    assert title_model.title_answered.is_set()
    assert "keeps the title it was given while the title model wrote one" in caplog.text
    assert ChatKitThread.objects.get(pk=thread_id).title == "My Golf"
    assert ChatKitThread.objects.get(pk=thread_id).data["title"] == "My Golf"
    assert browser.call("threads.list")["data"][0]["title"] == "My Golf"
