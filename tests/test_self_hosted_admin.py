"""Self-hosted threads in Django admin: browsable, searchable, read-only."""

import pytest
from django.contrib.admin.utils import quote
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatkit_api.models import ChatKitThread
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
