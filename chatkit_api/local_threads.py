"""Self-hosted threads as the transcript services read them, like `openai_gateway` does in
managed mode: who owns a thread, and its items as ChatKit JSON, oldest first.

This module needs only the models, so a managed deployment never loads the ChatKit SDK.
"""

from collections.abc import Iterator
from typing import Any

from chatkit_api.exceptions import ThreadNotFound
from chatkit_api.models import ChatKitThread, ChatKitThreadItem


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
