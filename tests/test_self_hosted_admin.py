"""Self-hosted threads in Django admin: browsable, searchable, read-only."""

import pytest
from django.contrib.admin.utils import quote
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatkit_api.models import ChatKitThread
from chatkit_api.rendering import feedback_colour
from tests.chatkit_protocol import ChatKitBrowser, thread_id_of

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/chatkit_api/chatkitthread/"


def change_page(thread_id):
    # As the admin links it: an id such as thr_25... would otherwise read as thr%...
    return f"{CHANGELIST}{quote(thread_id)}/change/"


@pytest.fixture
def threads(self_hosted):
    browser = ChatKitBrowser()
    first = thread_id_of(browser.say("Brake pads for a <b>Golf</b>?"))
    browser.say("Tuesday please", first)
    second = thread_id_of(ChatKitBrowser().say("Do you do MOTs?"))
    return first, second


def test_changelist_and_search(admin_client, threads):
    first, second = threads

    page = admin_client.get(CHANGELIST)
    assert page.status_code == 200
    assert first in page.content.decode() and second in page.content.decode()

    found = admin_client.get(CHANGELIST, {"q": "MOT"})
    assert second in found.content.decode()
    assert first not in found.content.decode()


def test_changelist_query_count_does_not_grow_with_threads(admin_client, threads):
    with CaptureQueriesContext(connection) as few:
        admin_client.get(CHANGELIST)
    for _ in range(5):
        ChatKitBrowser().say("another")
    with CaptureQueriesContext(connection) as more:
        admin_client.get(CHANGELIST)

    assert len(more) == len(few)


def test_detail_shows_the_conversation_escaped_and_nothing_is_editable(admin_client, threads):
    first, _ = threads
    url = change_page(first)

    page = admin_client.get(url)

    assert page.status_code == 200
    html = page.content.decode()
    assert "User: Brake pads for a &lt;b&gt;Golf&lt;/b&gt;?" in html
    assert "Assistant: You said: Tuesday please" in html
    assert "<b>Golf</b>" not in html
    assert 'name="_save"' not in html
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert admin_client.post(url, {"title": "changed"}).status_code == 403
    assert ChatKitThread.objects.get(pk=first).title == "Brake pads for a <b>Golf</b>?"


# --- the visitors' feedback ---------------------------------------------------------


def give_feedback(browser, thread_id, kind):
    [answer, *_] = [
        item["id"]
        for item in browser.call("items.list", thread_id=thread_id, order="desc")["data"]
        if item["type"] == "assistant_message"
    ]
    browser.call("items.feedback", thread_id=thread_id, item_ids=[answer], kind=kind)
    return answer


@pytest.fixture
def judged_threads(self_hosted):
    """Threads whose visitors gave their answers a thumbs down, a thumbs up, and nothing."""
    threads = {}
    for kind, question in [("negative", "Brakes?"), ("positive", "Tyres?"), (None, "MOT?")]:
        browser = ChatKitBrowser()
        thread_id = thread_id_of(browser.say(question))
        if kind:
            give_feedback(browser, thread_id, kind)
        threads[kind] = thread_id
    return threads


def listed(admin_client, **query):
    page = admin_client.get(CHANGELIST, query)
    assert page.status_code == 200
    return {thread.pk for thread in page.context["cl"].result_list}


def test_threads_are_filtered_by_their_visitors_feedback(admin_client, judged_threads):
    browser = ChatKitBrowser()
    mixed = thread_id_of(browser.say("Clutch?"))
    give_feedback(browser, mixed, "negative")
    browser.say("And the gearbox?", mixed)
    give_feedback(browser, mixed, "positive")

    assert listed(admin_client, feedback="negative") == {judged_threads["negative"], mixed}
    assert listed(admin_client, feedback="positive") == {judged_threads["positive"], mixed}
    assert listed(admin_client, feedback="none") == {judged_threads[None]}
    assert len(listed(admin_client)) == 4
    page = admin_client.get(CHANGELIST).content.decode()
    assert "With thumbs down" in page and "Without feedback" in page


def test_the_thread_list_says_which_threads_have_feedback(admin_client, judged_threads):
    page = admin_client.get(CHANGELIST)

    rows = {
        thread.pk: page.context["cl"].model_admin.visitor_feedback(thread)
        for thread in page.context["cl"].result_list
    }
    assert "Thumbs down" in rows[judged_threads["negative"]]
    # In the colour the transcript mail gives it.
    assert feedback_colour("negative") in rows[judged_threads["negative"]]
    assert "Thumbs up" not in rows[judged_threads["negative"]]
    assert "Thumbs up" in rows[judged_threads["positive"]]
    assert rows[judged_threads[None]] == "—"


def test_the_list_with_feedback_costs_the_same_queries_however_many_threads(admin_client, judged_threads):
    with CaptureQueriesContext(connection) as few:
        admin_client.get(CHANGELIST, {"feedback": "negative"})
    for _ in range(5):
        browser = ChatKitBrowser()
        give_feedback(browser, thread_id_of(browser.say("another")), "negative")
    with CaptureQueriesContext(connection) as more:
        page = admin_client.get(CHANGELIST, {"feedback": "negative"})

    assert len(page.context["cl"].result_list) == 6
    assert len(more) == len(few)


def test_the_thread_shows_feedback_beside_the_answer_it_is_about(admin_client, self_hosted):
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("Brakes?"))
    browser.say("Tyres?", thread_id)
    disliked = give_feedback(browser, thread_id, "negative")

    page = admin_client.get(change_page(thread_id))

    html = page.content.decode()
    assert "Assistant: You said: Brakes?\n\n" in html
    assert "Assistant: You said: Tyres?\nVisitor feedback: Thumbs down" in html
    # The answer's own row among the thread's items says it too, and when.
    rows = html.split("<tr")
    [row] = [row for row in rows if disliked in row]
    assert "Thumbs down (" in row
    assert sum("Thumbs down (" in row for row in rows) == 1
