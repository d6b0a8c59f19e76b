"""`manage.py import_managed_threads`: managed threads read from the fake ChatKit API over HTTP
with the real `openai` SDK, written into the self-hosted store, and served and mailed from there."""

from collections import Counter
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from chatkit_api.models import ChatKitThread, ChatKitThreadItem, Transcript
from tests.chatkit_protocol import ChatKitBrowser, assistant_texts, user_input
from tests.fake_chatkit import (
    BASE_TIME,
    assistant_message,
    client_tool_call,
    task,
    task_group,
    user_message,
    widget,
)
from tests.test_transcript import send, server_client

pytestmark = pytest.mark.django_db

VISITOR = "visitor_Zk3J9qL2mW8xP1vR4tY7uA0b"


def every_type():
    """One of each managed item type, new each time: the fake stamps ids into what it is given."""
    return [
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
        {"type": "chatkit.something_new", "payload": "?", "note": {"text": "Booked for Tuesday"}},
    ]


def conversation(thread_id):
    """The thread as the transcript mail shows it, a block per item."""
    send(server_client(), {"threadId": thread_id})
    body = Transcript.objects.filter(thread_id=thread_id).latest("id").body_text
    return body.split("\n---\n\n", 1)[1].strip().split("\n\n")


def run_import(*args):
    out = StringIO()
    call_command("import_managed_threads", *args, stdout=out)
    return out.getvalue()


def conversation_turns(count):
    items = []
    for number in range(count // 2):
        items += [user_message(f"question {number}"), assistant_message(f"answer {number}")]
    return items


def item_requests(fake_chatkit, thread_id):
    return fake_chatkit.requests_to("GET", f"/v1/chatkit/threads/{thread_id}/items")


def test_every_item_type_is_kept_and_mailed_as_managed_mode_mailed_it(fake_chatkit, ses, settings):
    thread = fake_chatkit.add_thread(user=VISITOR, items=every_type(), title="Invoice question")
    managed_mail = conversation(thread.id)

    output = run_import()

    row = ChatKitThread.objects.get(pk=thread.id)
    assert (row.visitor_id, row.title) == (VISITOR, "Invoice question")
    assert row.created_at == datetime.fromtimestamp(BASE_TIME, tz=UTC)
    assert row.import_cursor == thread.items[-1]["id"]
    items = list(row.items.order_by("created_at", "id"))
    assert [item.item_id for item in items] == [item["id"] for item in thread.items]
    assert [item.type for item in items] == [
        "user_message",
        "assistant_message",
        "widget",
        "client_tool_call",
        "task",
        "workflow",
        "hidden_context_item",
    ]
    assert items[6].data["content"]["managed_item"]["type"] == "chatkit.something_new"
    assert "1 chatkit.something_new" in output

    settings.CHATKIT_MODE = "self_hosted"
    imported_mail = conversation(thread.id)
    assert imported_mail == managed_mail
    assert (
        imported_mail[-1]
        == "[2025-11-24 16:00 UTC] Unsupported item (chatkit.something_new): Booked for Tuesday"
    )


def test_the_visitor_finds_the_history_and_the_conversation_goes_on(fake_chatkit, self_hosted, settings):
    settings.CHATKIT_MODE = "managed"
    browser = ChatKitBrowser()
    assert browser.client.post("/api/chatkit/session", {}, content_type="application/json").status_code == 200
    [session] = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")
    visitor = session.body["user"]
    older = fake_chatkit.add_thread(user=visitor, items=conversation_turns(4), title="Tyres")
    newer = fake_chatkit.add_thread(
        user=visitor,
        items=[user_message("Brakes squeal", attachments=["noise.m4a"]), assistant_message("Which car?")],
        created_at=BASE_TIME + 3600,
        title="Brakes",
    )
    fake_chatkit.add_thread(user="visitor_someone_else", items=conversation_turns(2))
    run_import()

    settings.CHATKIT_MODE = "self_hosted"
    listed = browser.call("threads.list", limit=10)
    assert [(thread["id"], thread["title"]) for thread in listed["data"]] == [
        (newer.id, "Brakes"),
        (older.id, "Tyres"),
    ]
    page = browser.call("items.list", thread_id=older.id, order="asc")
    assert [item["content"][0]["text"] for item in page["data"]] == [
        "question 0",
        "answer 0",
        "question 1",
        "answer 1",
    ]

    events = browser.stream("threads.add_user_message", thread_id=newer.id, input=user_input("A 2019 Golf"))

    assert assistant_texts(events) == ["You said: A 2019 Golf"]
    [call] = self_hosted.calls
    assert call.texts("user") == [
        "Brakes squeal[The visitor attached noise.m4a (application/pdf); the file is gone.]",
        "A 2019 Golf",
    ]
    assert call.texts("assistant") == ["Which car?"]


def test_a_250_message_thread_imports_once_however_often_the_import_runs(fake_chatkit, ses, settings):
    thread = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(250))

    first = run_import()
    assert len(item_requests(fake_chatkit, thread.id)) == 3
    assert "new thread, added 250 items" in first
    fake_chatkit.requests.clear()

    second = run_import()

    assert ChatKitThreadItem.objects.filter(thread_id=thread.id).count() == 250
    [request] = item_requests(fake_chatkit, thread.id)
    assert request.query["after"] == thread.items[-1]["id"]
    assert "up to date" in second
    assert "Items: 0 read, 0 added." in second

    fake_chatkit.add_items(thread, [user_message("one more thing"), assistant_message("sure")])
    third = run_import()
    assert "added 2 items" in third
    settings.CHATKIT_MODE = "self_hosted"
    blocks = conversation(thread.id)
    assert len(blocks) == 252
    assert [block.split("] ", 1)[1].split(":", 1)[0] for block in blocks] == ["User", "Assistant"] * 126
    assert blocks[0].endswith("User: question 0") and blocks[-1].endswith("Assistant: sure")


def every_type_thread(count):
    """`count` items: turns of conversation with every other managed item type in between."""
    items = conversation_turns(count)
    for position in range(5, count, 10):
        items[position] = every_type()[2 + (position // 10) % 5]
    return items


def test_a_10000_item_thread_takes_exactly_100_item_requests_and_imports_once(fake_chatkit):
    thread = fake_chatkit.add_thread(user=VISITOR, items=every_type_thread(10_000))

    first = run_import()
    second = run_import()

    requests = item_requests(fake_chatkit, thread.id)
    assert len(requests) == 101
    assert all(request.query["limit"] == "100" for request in requests)
    assert requests[-1].query["after"] == thread.items[-1]["id"]
    assert "added 10000 items (200 kept whole)" in first
    assert "Items: 0 read, 0 added." in second
    stored = list(
        ChatKitThreadItem.objects.filter(thread_id=thread.id)
        .order_by("created_at", "id")
        .values_list("item_id", "type")
    )
    assert [item_id for item_id, _ in stored] == [item["id"] for item in thread.items]
    assert Counter(kind for _, kind in stored) == {
        "user_message": 5000,
        "assistant_message": 4000,
        "widget": 200,
        "client_tool_call": 200,
        "task": 200,
        "workflow": 200,
        "hidden_context_item": 200,
    }


def test_a_dry_run_reads_everything_and_writes_nothing(fake_chatkit):
    thread = fake_chatkit.add_thread(user=VISITOR, items=every_type())

    output = run_import("--dry-run")

    assert not ChatKitThread.objects.exists()
    assert not ChatKitThreadItem.objects.exists()
    assert f"{thread.id} of {VISITOR}: new thread, would add 7 items (1 kept whole)" in output
    assert "Threads: 1 listed, 1 would be new" in output
    assert "Dry run: nothing was written." in output


def test_one_visitors_threads(fake_chatkit):
    mine = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(2))
    fake_chatkit.add_thread(user="visitor_other", items=conversation_turns(2))

    run_import("--user", VISITOR)

    assert list(ChatKitThread.objects.values_list("id", flat=True)) == [mine.id]
    [listing] = fake_chatkit.requests_to("GET", "/v1/chatkit/threads")[:1]
    assert listing.query == {"order": "asc", "limit": "100", "user": VISITOR}


def test_since_skips_threads_nobody_touched_since(fake_chatkit):
    since = BASE_TIME + 86_400
    stale = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(2))
    revived = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(2))
    fake_chatkit.add_items(revived, [{**user_message("back again"), "created_at": since + 60}])
    fresh = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(2), created_at=since + 10)

    output = run_import("--since", datetime.fromtimestamp(since, tz=UTC).isoformat())

    assert set(ChatKitThread.objects.values_list("id", flat=True)) == {revived.id, fresh.id}
    assert stale.id not in output
    assert "1 thread(s) not updated since --since: skipped." in output


def test_threads_are_listed_in_pages_of_100(fake_chatkit):
    for _ in range(150):
        fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(2))

    output = run_import()

    assert ChatKitThread.objects.count() == 150
    pages = fake_chatkit.requests_to("GET", "/v1/chatkit/threads")
    listings = [request for request in pages if request.path == "/v1/chatkit/threads"]
    hundredth = sorted(fake_chatkit.threads)[99]
    assert [request.query.get("after") for request in listings] == [None, hundredth]
    assert "[150/150]" in output


def test_a_rejected_key_says_so(fake_chatkit, settings):
    settings.OPENAI_API_KEY = "sk-wrong"
    fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(2))

    with pytest.raises(CommandError, match=r"OpenAI rejected OPENAI_API_KEY \(HTTP 401\)"):
        run_import()
    assert not ChatKitThread.objects.exists()


def test_without_an_api_key_it_names_the_setting(fake_chatkit, settings):
    settings.OPENAI_API_KEY = ""

    with pytest.raises(CommandError, match="OPENAI_API_KEY is not set"):
        run_import()


def test_a_missing_list_endpoint_means_the_managed_api_is_gone(fake_chatkit):
    fake_chatkit.fail(
        "GET",
        "/v1/chatkit/threads",
        404,
        {"error": {"message": "Not found", "type": "invalid_request_error"}},
    )

    with pytest.raises(CommandError, match="managed ChatKit API is no longer there"):
        run_import()


def test_rate_limits_are_waited_out(fake_chatkit):
    thread = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(250))
    fake_chatkit.fail("GET", f"/v1/chatkit/threads/{thread.id}/items", 429, skip=1, times=2)

    run_import()

    assert ChatKitThreadItem.objects.filter(thread_id=thread.id).count() == 250
    assert len(item_requests(fake_chatkit, thread.id)) == 5


def test_an_interrupted_import_keeps_what_it_did_and_continues_where_it_stopped(fake_chatkit):
    first = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(2))
    long = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(250))
    fake_chatkit.fail("GET", f"/v1/chatkit/threads/{long.id}/items", 503, skip=1)
    out = StringIO()

    with pytest.raises(CommandError) as stopped:
        call_command("import_managed_threads", "--retries", "1", stdout=out)

    assert f"Stopped at thread {long.id} (2 of 2)" in str(stopped.value)
    assert "answered HTTP 503" in str(stopped.value)
    assert "Items: 102 read, 102 added." in out.getvalue()
    assert ChatKitThreadItem.objects.filter(thread_id=first.id).count() == 2
    assert ChatKitThreadItem.objects.filter(thread_id=long.id).count() == 100
    assert ChatKitThread.objects.get(pk=long.id).import_cursor == long.items[99]["id"]

    fake_chatkit.failures.clear()
    fake_chatkit.requests.clear()
    run_import()

    assert [request.query.get("after") for request in item_requests(fake_chatkit, long.id)] == [
        long.items[99]["id"],
        long.items[199]["id"],
    ]
    assert ChatKitThreadItem.objects.filter(thread_id=long.id).count() == 250


def test_a_cursor_upstream_no_longer_knows_reads_the_thread_again(fake_chatkit):
    thread = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(4))
    run_import()
    ChatKitThread.objects.filter(pk=thread.id).update(import_cursor="cthi_removed_by_a_retry")
    fake_chatkit.add_items(thread, [user_message("later")])

    output = run_import()

    assert "added 1 items" in output
    assert ChatKitThreadItem.objects.filter(thread_id=thread.id).count() == 5


def test_a_thread_id_another_visitor_owns_here_is_left_alone(fake_chatkit):
    thread = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(2))
    ChatKitThread.objects.create(id=thread.id, visitor_id="visitor_local", created_at=datetime.now(UTC))

    output = run_import()

    assert ChatKitThread.objects.get(pk=thread.id).visitor_id == "visitor_local"
    assert not ChatKitThreadItem.objects.exists()
    assert f"[1/1] {thread.id}: left alone, another visitor has a thread with this id" in output
    assert "1 thread(s) left alone" in output


def test_an_imported_thread_is_mailed_without_openai(fake_chatkit, ses, settings):
    thread = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(2))
    run_import()
    settings.CHATKIT_MODE = "self_hosted"
    settings.OPENAI_API_KEY = ""

    response = send(server_client(), {"threadId": thread.id})

    assert response.status_code == 200
    assert len(ses.sent()) == 1


def test_staff_can_list_the_threads_brought_over_from_agent_builder(fake_chatkit, admin_client):
    imported = fake_chatkit.add_thread(user=VISITOR, items=conversation_turns(2), title="Brake pads")
    run_import()
    ChatKitThread.objects.create(
        id="thr_local", visitor_id=VISITOR, title="Tyres", created_at=datetime.now(UTC)
    )
    changelist = reverse("admin:chatkit_api_chatkitthread_changelist")

    from_agent_builder = admin_client.get(changelist, {"imported_at__isempty": "0"}).content.decode()
    local = admin_client.get(changelist, {"imported_at__isempty": "1"}).content.decode()

    assert "Brake pads" in from_agent_builder and "Tyres" not in from_agent_builder
    assert "Tyres" in local and "Brake pads" not in local
    page = admin_client.get(
        reverse("admin:chatkit_api_chatkitthread_change", args=[imported.id])
    ).content.decode()
    assert "Imported from managed ChatKit" in page
    assert "User: question 0" in page
