"""Self-hosted threads as the transcript services read them, like `openai_gateway` does in
managed mode: who owns a thread, and its items as ChatKit JSON, oldest first; and, which
managed mode has not, the visitor's feedback on them.

This module needs only the models, so a managed deployment never loads the ChatKit SDK.
"""

from collections.abc import Iterator
from typing import Any

from chatkit_api.exceptions import ThreadNotFound
from chatkit_api.models import ChatKitFeedback, ChatKitThread, ChatKitThreadItem


def thread_owner(thread_id: str) -> str:
    """The visitor that owns the thread; ThreadNotFound if there is no such thread."""
    owner = ChatKitThread.objects.filter(pk=thread_id).values_list("visitor_id", flat=True).first()
    if owner is None:
        raise ThreadNotFound()
    return owner


def thread_items(thread_id: str) -> Iterator[dict[str, Any]]:
    """Every item of the thread, oldest first; ThreadNotFound if there is no such thread."""
    if not ChatKitThread.objects.filter(pk=thread_id).exists():
        raise ThreadNotFound()
    yield from (
        ChatKitThreadItem.objects.filter(thread_id=thread_id)
        .order_by("created_at", "id")
        .values_list("data", flat=True)
        .iterator(chunk_size=500)
    )


def thread_feedback(thread_id: str) -> dict[str, str]:
    """The kind of feedback (`positive`, `negative`) given to each item of the thread that has
    any, by item id. Only the thread's visitor gives feedback, one verdict per item (their
    latest), so each item has at most one."""
    return dict(
        ChatKitFeedback.objects.filter(item__thread_id=thread_id).values_list("item__item_id", "kind")
    )
