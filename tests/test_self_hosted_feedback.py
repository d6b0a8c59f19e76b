"""Thumbs up and down on answers (`items.feedback`): kept per item and visitor, shown to staff."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from chatkit_api.models import ChatKitFeedback, ChatKitThread, ChatKitThreadItem
from tests.chatkit_protocol import CHATKIT_URL, ChatKitBrowser, done_items, thread_id_of
from tests.conftest import STAFF
from tests.fake_model import CallTool, Say

pytestmark = pytest.mark.django_db


def answer_id(events):
    """The id of the assistant's answer in a streamed reply."""
    [answer] = [item for item in done_items(events) if item["type"] == "assistant_message"]
    return answer["id"]


def new_thread(browser, text):
    """A thread the visitor starts with `text`, and the id of its answer."""
    events = browser.say(text)
    return thread_id_of(events), answer_id(events)


def feedback_rows():
    return list(ChatKitFeedback.objects.values_list("item__item_id", "visitor_id", "kind"))


def test_feedback_is_stored_with_the_visitor_and_the_time(self_hosted):
    browser = ChatKitBrowser()
    thread_id, answer = new_thread(browser, "Do you fit tyres?")
    visitor_id = ChatKitThread.objects.get(pk=thread_id).visitor_id
    before = timezone.now()

    assert browser.call("items.feedback", thread_id=thread_id, item_ids=[answer], kind="negative") == {}

    [feedback] = ChatKitFeedback.objects.all()
    assert feedback.item == ChatKitThreadItem.objects.get(thread_id=thread_id, item_id=answer)
    assert feedback.visitor_id == visitor_id
    assert feedback.kind == "negative"
    assert before <= feedback.given_at <= timezone.now()


def test_the_latest_verdict_on_an_item_replaces_the_earlier_one(self_hosted):
    browser = ChatKitBrowser()
    thread_id, answer = new_thread(browser, "Do you fit tyres?")
    browser.call("items.feedback", thread_id=thread_id, item_ids=[answer], kind="negative")
    first = ChatKitFeedback.objects.get().given_at

    browser.call("items.feedback", thread_id=thread_id, item_ids=[answer], kind="positive")
    browser.call("items.feedback", thread_id=thread_id, item_ids=[answer], kind="positive")

    [feedback] = ChatKitFeedback.objects.all()
    assert feedback.kind == "positive"
    assert feedback.given_at >= first


def test_feedback_on_every_item_of_an_answer(self_hosted):
    # An answer may be several items (a tool call, then the message); the widget names them all.
    browser = ChatKitBrowser()
    self_hosted.script.append(CallTool("open_booking_form", {"service": "brakes"}))
    events = browser.say("Book me in")
    thread_id = thread_id_of(events)
    [tool_call] = [item["id"] for item in done_items(events) if item["type"] == "client_tool_call"]
    self_hosted.script.append(Say("Booked for Tuesday."))
    answer = answer_id(
        browser.stream("threads.add_client_tool_output", thread_id=thread_id, result={"slot": "Tue"})
    )

    browser.call("items.feedback", thread_id=thread_id, item_ids=[tool_call, answer], kind="positive")

    visitor_id = ChatKitThread.objects.get(pk=thread_id).visitor_id
    assert sorted(feedback_rows()) == sorted(
        [(tool_call, visitor_id, "positive"), (answer, visitor_id, "positive")]
    )


def test_feedback_through_a_wsgi_server(self_hosted):
    browser = ChatKitBrowser()
    thread_id, answer = new_thread(browser, "Do you fit tyres?")
    body = {
        "type": "items.feedback",
        "params": {"thread_id": thread_id, "item_ids": [answer], "kind": "negative"},
    }

    response = browser.client.post(CHATKIT_URL, json.dumps(body), content_type="application/json")

    assert response.status_code == 200
    assert response.json() == {}
    assert [kind for *_, kind in feedback_rows()] == ["negative"]


def test_feedback_on_another_visitors_thread_or_item_is_a_404_and_stores_nothing(self_hosted):
    alice, mallory = ChatKitBrowser(), ChatKitBrowser()
    alices_thread, alices_answer = new_thread(alice, "My address is 1 Long Road")
    own_thread, own_answer = new_thread(mallory, "hello")

    attempts = [
        # Alice's thread and answer.
        mallory.post("items.feedback", thread_id=alices_thread, item_ids=[alices_answer], kind="negative"),
        # Alice's answer, named in a thread of Mallory's own.
        mallory.post("items.feedback", thread_id=own_thread, item_ids=[alices_answer], kind="negative"),
        # One of Mallory's items beside one of Alice's: nothing is stored, not even the first.
        mallory.post(
            "items.feedback", thread_id=own_thread, item_ids=[own_answer, alices_answer], kind="negative"
        ),
        mallory.post("items.feedback", thread_id=own_thread, item_ids=["msg_unknown"], kind="negative"),
        mallory.post("items.feedback", thread_id="thr_unknown", item_ids=[own_answer], kind="negative"),
    ]

    assert [response.status_code for response in attempts] == [404] * len(attempts)
    assert all(response.json()["error"].startswith("Not found") for response in attempts)
    assert not ChatKitFeedback.objects.exists()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"item_ids": [], "kind": "negative"}, "params.item_ids"),
        ({"item_ids": [f"msg_{number}" for number in range(101)], "kind": "negative"}, "params.item_ids"),
        ({"item_ids": ["msg_1"], "kind": "meh"}, "params.kind"),
    ],
)
def test_malformed_feedback_is_a_400_and_stores_nothing(self_hosted, params, expected):
    browser = ChatKitBrowser()
    thread_id, _ = new_thread(browser, "hello")

    response = browser.post("items.feedback", thread_id=thread_id, **params)

    assert response.status_code == 400
    assert expected in response.json()["error"]
    assert not ChatKitFeedback.objects.exists()


def test_deleting_a_thread_deletes_its_feedback(self_hosted):
    browser = ChatKitBrowser()
    thread_id, answer = new_thread(browser, "hello")
    kept_thread, kept_answer = new_thread(browser, "another")
    browser.call("items.feedback", thread_id=thread_id, item_ids=[answer], kind="negative")
    browser.call("items.feedback", thread_id=kept_thread, item_ids=[kept_answer], kind="negative")

    assert browser.call("threads.delete", thread_id=thread_id) == {}

    assert [item_id for item_id, *_ in feedback_rows()] == [kept_answer]


def test_a_retried_answer_takes_its_feedback_with_it(self_hosted):
    browser = ChatKitBrowser()
    events = browser.say("hello")
    thread_id = thread_id_of(events)
    [message] = [item for item in done_items(events) if item["type"] == "user_message"]
    browser.call("items.feedback", thread_id=thread_id, item_ids=[answer_id(events)], kind="negative")
    self_hosted.script.append(Say("A better answer."))

    browser.stream("threads.retry_after_item", thread_id=thread_id, item_id=message["id"])

    assert not ChatKitFeedback.objects.exists()


def test_the_transcript_mail_shows_feedback_beside_the_answer(self_hosted, ses):
    browser = ChatKitBrowser()
    thread_id, liked = new_thread(browser, "Do you fit tyres?")
    self_hosted.script.append(Say("We <b>do</b> not."))
    disliked = answer_id(browser.say("Alignment too?", thread_id))
    browser.call("items.feedback", thread_id=thread_id, item_ids=[liked], kind="positive")
    browser.call("items.feedback", thread_id=thread_id, item_ids=[disliked], kind="negative")

    browser.stream(
        "threads.custom_action",
        thread_id=thread_id,
        action={"type": "send_recap", "payload": {"name": "Zoë"}},
    )

    [mail] = ses.sent()
    assert mail.destinations == [STAFF]
    blocks = [block.split("] ", 1)[1] for block in mail.text.split("\n---\n\n", 1)[1].strip().split("\n\n")]
    assert blocks == [
        "User: Do you fit tyres?",
        "Assistant: You said: Do you fit tyres?\nVisitor feedback: Thumbs up",
        "User: Alignment too?",
        "Assistant: We <b>do</b> not.\nVisitor feedback: Thumbs down",
    ]
    html = mail.html
    assert html.count("Visitor feedback: Thumbs up") == 1
    assert html.count("Visitor feedback: Thumbs down") == 1
    # Beside the answer it is about: in that answer's heading, before the answer's text.
    down = html.index("Visitor feedback: Thumbs down")
    assert html.index("Alignment too?") < down < html.index("We &lt;b&gt;do&lt;/b&gt; not.")


def test_purging_an_idle_thread_deletes_its_feedback(self_hosted, settings):
    browser = ChatKitBrowser()
    thread_id, answer = new_thread(browser, "hello")
    browser.call("items.feedback", thread_id=thread_id, item_ids=[answer], kind="negative")
    ChatKitThread.objects.filter(pk=thread_id).update(updated_at=timezone.now() - timedelta(days=400))

    call_command("purge_threads", "--older-than", "365", stdout=StringIO())

    assert not ChatKitThread.objects.exists()
    assert not ChatKitFeedback.objects.exists()
