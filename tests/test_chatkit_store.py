"""The database store behind the self-hosted ChatKit server, through the SDK's Store interface."""

import re
import threading
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync
from chatkit.store import NotFoundError
from chatkit.types import FileAttachment, ThreadMetadata, UserMessageItem

from chatkit_api.chatkit_store import ChatKitContext, DjangoStore, database
from chatkit_api.models import ChatKitAttachment, ChatKitThread

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 11, 25, 16, 49, tzinfo=UTC)


@pytest.fixture
def store():
    return DjangoStore()


def context_for(visitor_id):
    return ChatKitContext(visitor_id=visitor_id)


def run(awaitable):
    """Await from this test's thread, as a WSGI request's async view is run."""

    async def awaited():
        return await awaitable

    return async_to_sync(awaited)()


def test_ids_keep_the_sdk_prefixes_and_are_long_enough_to_be_unique(store):
    context = context_for("visitor_a")
    thread = ThreadMetadata(id="thr_x", created_at=WHEN)

    assert re.fullmatch(r"thr_[0-9a-f]{32}", store.generate_thread_id(context))
    assert re.fullmatch(r"msg_[0-9a-f]{32}", store.generate_item_id("message", thread, context))
    assert re.fullmatch(r"tc_[0-9a-f]{32}", store.generate_item_id("tool_call", thread, context))


def test_the_database_work_runs_on_the_requests_thread(store):
    context = context_for("visitor_a")
    seen = []

    def where():
        seen.append(threading.current_thread())

    run(store.save_thread(ThreadMetadata(id="thr_1", created_at=WHEN), context))
    run(database(where))

    assert seen == [threading.current_thread()]
    assert ChatKitThread.objects.get().visitor_id == "visitor_a"


def test_attachments_belong_to_one_visitor(store):
    alice = context_for("visitor_alice")
    mallory = context_for("visitor_mallory")
    run(store.save_thread(ThreadMetadata(id="thr_alice", created_at=WHEN), alice))
    attachment = FileAttachment(
        id="atc_1", name="invoice.pdf", mime_type="application/pdf", thread_id="thr_alice"
    )

    run(store.save_attachment(attachment, alice))

    assert run(store.load_attachment("atc_1", alice)) == attachment
    assert ChatKitAttachment.objects.get().thread_id == "thr_alice"
    with pytest.raises(NotFoundError):
        run(store.load_attachment("atc_1", mallory))
    with pytest.raises(NotFoundError):
        run(store.save_attachment(attachment.model_copy(update={"name": "mine.pdf"}), mallory))
    run(store.delete_attachment("atc_1", mallory))
    assert ChatKitAttachment.objects.get().name == "invoice.pdf"
    run(store.delete_attachment("atc_1", alice))
    assert not ChatKitAttachment.objects.exists()


def test_a_thread_id_of_another_visitor_cannot_be_saved_over(store):
    alice = context_for("visitor_alice")
    mallory = context_for("visitor_mallory")
    run(store.save_thread(ThreadMetadata(id="thr_1", title="Alice's", created_at=WHEN), alice))

    with pytest.raises(NotFoundError):
        run(store.save_thread(ThreadMetadata(id="thr_1", title="Mine", created_at=WHEN), mallory))

    thread = ChatKitThread.objects.get()
    assert (thread.visitor_id, thread.title) == ("visitor_alice", "Alice's")


def test_pages_do_not_skip_or_repeat_threads_started_at_the_same_moment(store):
    context = context_for("visitor_a")
    ids = [f"thr_{n}" for n in range(5)]
    for thread_id in ids:
        run(store.save_thread(ThreadMetadata(id=thread_id, created_at=WHEN), context))

    seen, after = [], None
    while True:
        page = run(store.load_threads(2, after, "desc", context))
        seen += [thread.id for thread in page.data]
        if not page.has_more:
            break
        after = page.after

    assert sorted(seen) == ids
    assert len(seen) == len(set(seen))


def test_saving_an_item_again_replaces_it(store):
    context = context_for("visitor_a")
    run(store.save_thread(ThreadMetadata(id="thr_1", created_at=WHEN), context))

    def message(text):
        return UserMessageItem.model_validate(
            {
                "id": "msg_1",
                "thread_id": "thr_1",
                "created_at": WHEN,
                "content": [{"type": "input_text", "text": text}],
                "inference_options": {},
            }
        )

    run(store.add_thread_item("thr_1", message("first"), context))
    run(store.save_item("thr_1", message("edited"), context))

    [stored] = ChatKitThread.objects.get().items.all()
    assert stored.data["content"] == [{"type": "input_text", "text": "edited"}]
    assert run(store.load_item("thr_1", "msg_1", context)).content[0].text == "edited"
    with pytest.raises(NotFoundError):
        run(store.load_item("thr_1", "msg_1", context_for("visitor_b")))


def test_page_size_is_capped(store):
    context = context_for("visitor_a")
    for n in range(105):
        run(store.save_thread(ThreadMetadata(id=f"thr_{n:03d}", created_at=WHEN), context))

    page = run(store.load_threads(10_000, None, "asc", context))

    assert len(page.data) == 100
    assert page.has_more
