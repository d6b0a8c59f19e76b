"""Self-hosted ChatKit threads in the database: the SDK's `Store`, scoped to one visitor.

Every read and write filters by the visitor from the signed cookie, so another visitor's
thread, item or attachment is "not found", exactly like an id that does not exist. Items are
kept as the JSON the SDK serialises them to, which is also what the transcript mail renders.

The ORM work is plain synchronous functions; the async `Store` methods hand each one to
Django's thread for synchronous code (asgiref's `sync_to_async`, thread-sensitive): under an
ASGI server the ChatKit server runs on the server's event loop and the queries on that thread;
under WSGI the request's own thread runs them, inside the request's transaction.

A thread runs one answer at a time: a request that makes the agent answer on a thread claims
the thread until the answer ends (`thread_run_claim`), and another request for it meanwhile
is refused. A claim left by a process that died runs out by itself.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from chatkit.store import AttachmentStore, NotFoundError, Store, StoreItemType, default_generate_id
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    Page,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
)
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, models, transaction
from django.db.models import Q
from django.utils import timezone
from pydantic import BaseModel, TypeAdapter

from chatkit_api.attachments import attachment_new, attachment_with_fresh_urls
from chatkit_api.models import (
    ChatKitAttachment,
    ChatKitFeedback,
    ChatKitThread,
    ChatKitThreadItem,
    char_limit,
)

# The most a client may ask for in one page of threads or items.
MAX_PAGE_SIZE = 100

_THREAD_ITEM: TypeAdapter[Any] = TypeAdapter(ThreadItem)
_ATTACHMENT: TypeAdapter[Any] = TypeAdapter(Attachment)
_Row = TypeVar("_Row", bound=models.Model)
T = TypeVar("T")


@dataclass
class Run:
    """An answer a request makes the agent write: its thread (known once it is created or
    claimed) and the moment the claim on the thread runs out."""

    claimed_until: datetime
    thread_id: str | None = None


@dataclass(frozen=True)
class ChatKitContext:
    """What the ChatKit server and the store know about a request: whose it is."""

    visitor_id: str
    # The address the platform saw, which the recap action's rate limits count by.
    client_ip: str = ""
    # What a managed session passed its workflow as state variables, read from the widget's
    # request here: the browser's language and the page the chat is on (see agent.workflow_state).
    locale: str = "en"
    page_url: str = ""
    # This endpoint's absolute URL, which links to files kept by this service start with.
    api_url: str = "http://localhost/api/chatkit"
    # Set when the request makes the agent answer (see `thread_run_claim`).
    run: Run | None = field(default=None, compare=False)


async def database(function: Callable[..., T], /, **kwargs: Any) -> T:
    """Run a synchronous ORM function from async code, in Django's thread for sync code.

    A pooled connection goes back to the pool after each call: an answer that streams for a
    minute holds none while the model writes, so a small pool serves many answers at once.
    """
    return await sync_to_async(_call_returning_connection, thread_sensitive=True)(function, kwargs)


def _call_returning_connection(function: Callable[..., T], kwargs: dict[str, Any]) -> T:
    try:
        return function(**kwargs)
    finally:
        connection = connections[DEFAULT_DB_ALIAS]
        if connection.settings_dict["OPTIONS"].get("pool") and not connection.in_atomic_block:
            connection.close()


def _new_id(kind: StoreItemType) -> str:
    # The SDK's own ids end in 32 random bits, too few for a primary key shared by every
    # visitor; keep its prefixes (thr_, msg_, ...) and make the rest a full UUID.
    prefix = default_generate_id(kind).partition("_")[0]
    return f"{prefix}_{uuid.uuid4().hex}"


def _aware(value: datetime) -> datetime:
    # The SDK stamps threads and items with datetime.now(): naive, in the process's local time.
    return value.astimezone(UTC)


def _as_json(
    model: BaseModel, created_at: datetime, *, exclude: frozenset[str] = frozenset()
) -> dict[str, Any]:
    data = model.model_dump(mode="json", exclude=set(exclude))
    data["created_at"] = created_at.isoformat()
    return data


def _page_size(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE_SIZE))


def _keyset_page(
    queryset: "models.QuerySet[_Row]", *, cursor: _Row | None, order: str, limit: int
) -> tuple[list[_Row], bool]:
    """One page ordered by (created_at, id), starting after `cursor`, and whether more follow."""
    descending = order == "desc"
    if cursor is not None:
        lookup = "lt" if descending else "gt"
        created_at = cursor.created_at  # type: ignore[attr-defined]
        queryset = queryset.filter(
            Q(**{f"created_at__{lookup}": created_at})
            | Q(created_at=created_at, **{f"id__{lookup}": cursor.pk})
        )
    ordering = ["-created_at", "-id"] if descending else ["created_at", "id"]
    rows = list(queryset.order_by(*ordering)[: limit + 1])
    return rows[:limit], len(rows) > limit


# --- threads -----------------------------------------------------------------------


def _thread_row(visitor_id: str, thread_id: str) -> ChatKitThread:
    try:
        return ChatKitThread.objects.get(pk=thread_id, visitor_id=visitor_id)
    except ChatKitThread.DoesNotExist:
        raise NotFoundError(f"Thread {thread_id} not found") from None


def thread_load(*, visitor_id: str, thread_id: str) -> ThreadMetadata:
    return ThreadMetadata.model_validate(_thread_row(visitor_id, thread_id).data)


def thread_fields(thread: ThreadMetadata) -> dict[str, Any]:
    """The columns of a thread's row that the thread's metadata gives."""
    created_at = _aware(thread.created_at)
    return {
        "title": (thread.title or "")[: char_limit(ChatKitThread, "title")],
        "created_at": created_at,
        # The server may hand over a whole Thread; its items are rows of their own.
        "data": _as_json(thread, created_at, exclude=frozenset({"items"})),
    }


def thread_save(*, visitor_id: str, thread: ThreadMetadata, running_until: datetime | None = None) -> None:
    """Create or update the visitor's thread; a new one is claimed until `running_until`."""
    fields = thread_fields(thread)
    created_at = fields.pop("created_at")
    updated = ChatKitThread.objects.filter(pk=thread.id, visitor_id=visitor_id).update(
        updated_at=timezone.now(), **fields
    )
    if updated:
        return
    try:
        with transaction.atomic():
            ChatKitThread.objects.create(
                id=thread.id,
                visitor_id=visitor_id,
                created_at=created_at,
                running_until=running_until,
                **fields,
            )
    except IntegrityError:
        # The id belongs to another visitor's thread.
        raise NotFoundError(f"Thread {thread.id} not found") from None


def thread_title_if_untitled(*, visitor_id: str, thread_id: str, title: str) -> bool:
    """Give the thread `title` unless it has one, e.g. one the visitor chose meanwhile."""
    return thread_title_replace(visitor_id=visitor_id, thread_id=thread_id, current="", title=title)


def thread_title_replace(*, visitor_id: str, thread_id: str, current: str, title: str) -> bool:
    """Give the thread `title` if its title is still `current` ("" for none), never over one
    the visitor chose meanwhile; False when it was not written."""
    thread = _thread_row(visitor_id, thread_id)
    if thread.title != current:
        return False
    title = title[: char_limit(ChatKitThread, "title")]
    data = {**thread.data, "title": title}
    return bool(
        ChatKitThread.objects.filter(pk=thread_id, visitor_id=visitor_id, title=current).update(
            title=title, data=data, updated_at=timezone.now()
        )
    )


def thread_run_claim(*, visitor_id: str, thread_id: str, until: datetime) -> bool:
    """Claim the visitor's thread for one answer; False while another answer runs on it.

    NotFoundError when the visitor has no such thread.
    """
    now = timezone.now()
    claimed = (
        ChatKitThread.objects.filter(pk=thread_id, visitor_id=visitor_id)
        .filter(Q(running_until__isnull=True) | Q(running_until__lt=now))
        .update(running_until=until)
    )
    if claimed:
        return True
    if not ChatKitThread.objects.filter(pk=thread_id, visitor_id=visitor_id).exists():
        raise NotFoundError(f"Thread {thread_id} not found")
    return False


def thread_run_release(*, thread_id: str) -> None:
    ChatKitThread.objects.filter(pk=thread_id).update(running_until=None)


def threads_load(*, visitor_id: str, limit: int, after: str | None, order: str) -> Page[ThreadMetadata]:
    cursor = _thread_row(visitor_id, after) if after else None
    rows, has_more = _keyset_page(
        ChatKitThread.objects.filter(visitor_id=visitor_id),
        cursor=cursor,
        order=order,
        limit=_page_size(limit),
    )
    return Page(
        data=[ThreadMetadata.model_validate(row.data) for row in rows],
        has_more=has_more,
        after=rows[-1].id if has_more else None,
    )


def thread_delete(*, visitor_id: str, thread_id: str) -> None:
    deleted, _ = ChatKitThread.objects.filter(pk=thread_id, visitor_id=visitor_id).delete()
    if not deleted:
        raise NotFoundError(f"Thread {thread_id} not found")


# --- items -------------------------------------------------------------------------


def _item_row(visitor_id: str, thread_id: str, item_id: str) -> ChatKitThreadItem:
    try:
        return ChatKitThreadItem.objects.get(
            thread_id=thread_id, thread__visitor_id=visitor_id, item_id=item_id
        )
    except ChatKitThreadItem.DoesNotExist:
        raise NotFoundError(f"Item {item_id} not found in thread {thread_id}") from None


def items_load(
    *, visitor_id: str, thread_id: str, after: str | None, limit: int, order: str
) -> Page[ThreadItem]:
    # One query where there are items: the join checks whose thread it is.
    items = ChatKitThreadItem.objects.filter(thread_id=thread_id, thread__visitor_id=visitor_id)
    cursor = _item_row(visitor_id, thread_id, after) if after else None
    rows, has_more = _keyset_page(items, cursor=cursor, order=order, limit=_page_size(limit))
    if not rows and cursor is None:
        _thread_row(visitor_id, thread_id)
    return Page(
        data=[_THREAD_ITEM.validate_python(row.data) for row in rows],
        has_more=has_more,
        after=rows[-1].item_id if has_more else None,
    )


def item_fields(item: Any) -> dict[str, Any]:
    """The columns of an item's row, its JSON as the SDK serialises it among them."""
    created_at = _aware(item.created_at)
    return {"type": item.type, "created_at": created_at, "data": _as_json(item, created_at)}


def item_save(*, visitor_id: str, thread_id: str, item: Any) -> None:
    """Add or replace an item: the SDK adds some items twice (a workflow kept open across turns).

    Two statements (every answer writes at least two items): the visitor's thread is marked
    changed, which also says whose it is, then the item is upserted.
    """
    thread = ChatKitThread.objects.filter(pk=thread_id, visitor_id=visitor_id)
    if not thread.update(updated_at=timezone.now()):
        raise NotFoundError(f"Thread {thread_id} not found")
    fields = item_fields(item)
    try:
        ChatKitThreadItem.objects.bulk_create(
            [ChatKitThreadItem(thread_id=thread_id, item_id=item.id, **fields)],
            update_conflicts=True,
            unique_fields=["thread", "item_id"],
            update_fields=list(fields),
        )
    except IntegrityError:
        # The thread was deleted in between.
        raise NotFoundError(f"Thread {thread_id} not found") from None


def item_load(*, visitor_id: str, thread_id: str, item_id: str) -> Any:
    return _THREAD_ITEM.validate_python(_item_row(visitor_id, thread_id, item_id).data)


def item_delete(*, visitor_id: str, thread_id: str, item_id: str) -> None:
    ChatKitThreadItem.objects.filter(
        thread_id=thread_id, thread__visitor_id=visitor_id, item_id=item_id
    ).delete()


# --- feedback ----------------------------------------------------------------------


def feedback_save(*, visitor_id: str, thread_id: str, item_ids: list[str], kind: str) -> None:
    """Record the visitor's `kind` (thumbs up or down) on each of the thread's items named,
    replacing what the visitor said of them before.

    NotFoundError, and nothing recorded, when the thread is not the visitor's or one of the
    items is not in it.
    """
    wanted = set(item_ids)
    items = dict(
        ChatKitThreadItem.objects.filter(
            thread_id=thread_id, thread__visitor_id=visitor_id, item_id__in=wanted
        ).values_list("item_id", "pk")
    )
    missing = sorted(wanted - items.keys())
    if missing:
        if not items:
            _thread_row(visitor_id, thread_id)
        raise NotFoundError(f"Item {missing[0]} not found in thread {thread_id}")
    given_at = timezone.now()
    try:
        with transaction.atomic():
            ChatKitFeedback.objects.bulk_create(
                [
                    ChatKitFeedback(item_id=pk, visitor_id=visitor_id, kind=kind, given_at=given_at)
                    for pk in items.values()
                ],
                update_conflicts=True,
                unique_fields=["item", "visitor_id"],
                update_fields=["kind", "given_at"],
            )
    except IntegrityError:
        # An item was deleted in between (a retry replaced the answer, or the thread went).
        raise NotFoundError(f"Item not found in thread {thread_id}") from None


# --- attachments -------------------------------------------------------------------


def attachment_save(*, visitor_id: str, attachment: Any) -> None:
    thread = (
        ChatKitThread.objects.filter(pk=attachment.thread_id, visitor_id=visitor_id).first()
        if attachment.thread_id
        else None
    )
    # Set by this service when it created the attachment, never by the widget (which only
    # ever names attachments by id).
    metadata = attachment.metadata or {}
    fields = {
        "thread": thread,
        "name": attachment.name[: char_limit(ChatKitAttachment, "name")],
        "mime_type": attachment.mime_type[: char_limit(ChatKitAttachment, "mime_type")],
        "size": metadata.get("size") or 0,
        "file": metadata.get("file") or "",
        "data": attachment.model_dump(mode="json"),
    }
    if ChatKitAttachment.objects.filter(pk=attachment.id, visitor_id=visitor_id).update(**fields):
        return
    try:
        with transaction.atomic():
            ChatKitAttachment.objects.create(id=attachment.id, visitor_id=visitor_id, **fields)
    except IntegrityError:
        raise NotFoundError(f"Attachment {attachment.id} not found") from None


def attachment_load(*, visitor_id: str, attachment_id: str) -> Any:
    try:
        row = ChatKitAttachment.objects.get(pk=attachment_id, visitor_id=visitor_id)
    except ChatKitAttachment.DoesNotExist:
        raise NotFoundError(f"Attachment {attachment_id} not found") from None
    return _ATTACHMENT.validate_python(row.data)


def attachment_delete(*, visitor_id: str, attachment_id: str) -> None:
    ChatKitAttachment.objects.filter(pk=attachment_id, visitor_id=visitor_id).delete()


class DjangoStore(Store[ChatKitContext]):
    """The SDK's store interface over the functions above, for the visitor in the context."""

    def generate_thread_id(self, context: ChatKitContext) -> str:
        thread_id = _new_id("thread")
        if context.run is not None:
            # The answer this request runs is on the thread it is creating.
            context.run.thread_id = thread_id
        return thread_id

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: ChatKitContext
    ) -> str:
        return _new_id(item_type)

    def _as_shown(self, attachment: Attachment, context: ChatKitContext) -> Attachment:
        return attachment_with_fresh_urls(attachment, visitor_id=context.visitor_id, api_url=context.api_url)

    def _item_as_shown(self, item: ThreadItem, context: ChatKitContext) -> ThreadItem:
        if not isinstance(item, UserMessageItem) or not item.attachments:
            return item
        return item.model_copy(
            update={"attachments": [self._as_shown(attachment, context) for attachment in item.attachments]}
        )

    async def load_thread(self, thread_id: str, context: ChatKitContext) -> ThreadMetadata:
        return await database(thread_load, visitor_id=context.visitor_id, thread_id=thread_id)

    async def save_thread(self, thread: ThreadMetadata, context: ChatKitContext) -> None:
        run = context.run
        running_until = run.claimed_until if run is not None and run.thread_id == thread.id else None
        await database(thread_save, visitor_id=context.visitor_id, thread=thread, running_until=running_until)

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: ChatKitContext
    ) -> Page[ThreadMetadata]:
        return await database(
            threads_load, visitor_id=context.visitor_id, limit=limit, after=after, order=order
        )

    async def delete_thread(self, thread_id: str, context: ChatKitContext) -> None:
        await database(thread_delete, visitor_id=context.visitor_id, thread_id=thread_id)

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: ChatKitContext
    ) -> Page[ThreadItem]:
        page = await database(
            items_load,
            visitor_id=context.visitor_id,
            thread_id=thread_id,
            after=after,
            limit=limit,
            order=order,
        )
        # Image previews are signed for a while only: signed afresh whenever a thread is read.
        page.data = [self._item_as_shown(item, context) for item in page.data]
        return page

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: ChatKitContext) -> None:
        await database(item_save, visitor_id=context.visitor_id, thread_id=thread_id, item=item)

    async def save_item(self, thread_id: str, item: ThreadItem, context: ChatKitContext) -> None:
        await database(item_save, visitor_id=context.visitor_id, thread_id=thread_id, item=item)

    async def load_item(self, thread_id: str, item_id: str, context: ChatKitContext) -> ThreadItem:
        return await database(item_load, visitor_id=context.visitor_id, thread_id=thread_id, item_id=item_id)

    async def delete_thread_item(self, thread_id: str, item_id: str, context: ChatKitContext) -> None:
        await database(item_delete, visitor_id=context.visitor_id, thread_id=thread_id, item_id=item_id)

    async def save_attachment(self, attachment: Attachment, context: ChatKitContext) -> None:
        await database(attachment_save, visitor_id=context.visitor_id, attachment=attachment)

    async def load_attachment(self, attachment_id: str, context: ChatKitContext) -> Attachment:
        attachment = await database(
            attachment_load, visitor_id=context.visitor_id, attachment_id=attachment_id
        )
        return self._as_shown(attachment, context)

    async def delete_attachment(self, attachment_id: str, context: ChatKitContext) -> None:
        await database(attachment_delete, visitor_id=context.visitor_id, attachment_id=attachment_id)


class SiteAttachmentStore(AttachmentStore[ChatKitContext]):
    """The SDK's two-phase uploads over chatkit_api.attachments, for the visitor in the context."""

    async def create_attachment(self, input: AttachmentCreateParams, context: ChatKitContext) -> Attachment:
        # Signing an upload URL reads no database, but may read AWS credentials from disk.
        return await sync_to_async(attachment_new, thread_sensitive=False)(
            visitor_id=context.visitor_id,
            name=input.name,
            size=input.size,
            mime_type=input.mime_type,
            api_url=context.api_url,
        )

    async def delete_attachment(self, attachment_id: str, context: ChatKitContext) -> None:
        # Only the visitor's own: the store's deletion that follows takes the file with the row.
        await database(attachment_load, visitor_id=context.visitor_id, attachment_id=attachment_id)
