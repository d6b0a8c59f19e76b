"""Copy the threads that managed ChatKit (Agent Builder) keeps at OpenAI into the self-hosted
store, so that after the switch every visitor finds their history and staff can still mail it.

The ChatKit user of a managed thread is the visitor id from this service's cookie, so an
imported thread belongs to the same visitor here. Threads and item ids, titles, order and
times are kept; items become `openai-chatkit` types (see `managed_items`).

Items are read a page at a time and each page is written in one transaction together with
the thread's cursor (the last managed item imported), so a long thread is never held in
memory, an interrupted run continues where it stopped, and running the import again only
adds what is new. An item already here is never written twice.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from chatkit_api import openai_gateway
from chatkit_api.chatkit_store import item_fields, thread_fields
from chatkit_api.exceptions import (
    ManagedChatKitGone,
    NotConfigured,
    ServiceError,
    ThreadNotFound,
    UpstreamError,
)
from chatkit_api.managed_items import ConvertedItem, managed_item_convert, managed_thread_metadata
from chatkit_api.models import ChatKitThread, ChatKitThreadItem

# Within a long thread, progress is reported every this many items.
PROGRESS_EVERY_ITEMS = 1000
# How often a request OpenAI answers with 429 or 5xx is tried again (the SDK backs off between tries).
DEFAULT_RETRIES = 5


@dataclass
class ImportSummary:
    threads_listed: int = 0
    threads_created: int = 0
    threads_updated: int = 0
    threads_unchanged: int = 0
    # Not updated since --since.
    threads_skipped: int = 0
    # A thread with the same id belongs to another visitor here: left alone.
    threads_conflicting: int = 0
    # Listed, then gone before its items were read.
    threads_gone: int = 0
    items_read: int = 0
    items_added: int = 0
    # Managed item types that fit no SDK type, kept whole (hidden in the widget, shown in mail).
    kept_whole: Counter[str] = field(default_factory=Counter)


class ImportStopped(Exception):
    """OpenAI refused or stayed unreachable; what was imported before is kept."""

    def __init__(self, reason: str, summary: ImportSummary) -> None:
        super().__init__(reason)
        self.reason = reason
        self.summary = summary


def _refusal(exc: ServiceError) -> str:
    """What to tell the operator when OpenAI refuses, in the terms of the import."""
    if isinstance(exc, ManagedChatKitGone):
        return (
            "OpenAI answered 404 for the ChatKit thread list: the managed ChatKit API is no longer "
            "there (Agent Builder shut down on 2026-11-30), so no more threads can be imported."
        )
    if isinstance(exc, UpstreamError) and exc.upstream_status == 401:
        return (
            "OpenAI rejected OPENAI_API_KEY (HTTP 401). Use a key of the OpenAI project whose "
            "Agent Builder workflow served the site: its threads belong to that project."
        )
    return exc.message


@dataclass
class _ThreadRun:
    """One managed thread being imported: its row here (None until written) and what was added."""

    managed: dict[str, Any]
    position: str
    dry_run: bool
    max_retries: int
    summary: ImportSummary
    progress: Callable[[str], None]
    row: ChatKitThread | None
    added: int = 0
    kept: int = 0

    @property
    def thread_id(self) -> str:
        return str(self.managed["id"])

    @property
    def visitor_id(self) -> str:
        return str(self.managed["user"])

    def newer_than(self, since: datetime) -> bool:
        """Whether the thread started or had an item since then (one request for an old thread)."""
        if managed_thread_metadata(self.managed).created_at >= since:
            return True
        pages = openai_gateway.thread_item_pages(self.thread_id, order="desc", max_retries=self.max_retries)
        newest = next(pages, [])
        return bool(newest) and managed_item_convert(newest[0]).item.created_at >= since

    def run(self) -> None:
        existed = self.row is not None
        cursor = self.row.import_cursor if self.row is not None else ""
        try:
            self._read_from(cursor)
        except UpstreamError as exc:
            if not cursor or exc.upstream_status != 400:
                raise
            # The cursor's item is gone upstream (a retried answer replaces items): read the
            # thread from its start; the items already here are recognised and skipped.
            self._read_from("")
        if self.row is None and not self.dry_run:
            self._store([], cursor="")
        self._report(existed)

    def _read_from(self, cursor: str) -> None:
        read = 0
        pages = openai_gateway.thread_item_pages(
            self.thread_id, after=cursor or None, max_retries=self.max_retries
        )
        for page in pages:
            self._store([managed_item_convert(item) for item in page], cursor=page[-1]["id"] if page else "")
            read += len(page)
            self.summary.items_read += len(page)
            if read // PROGRESS_EVERY_ITEMS > (read - len(page)) // PROGRESS_EVERY_ITEMS:
                self.progress(f"{self.position} {self.thread_id}: {read:,} items read so far")

    def _store(self, converted: list[ConvertedItem], *, cursor: str) -> None:
        """Write one page of items, and the thread's cursor with it."""
        present: set[str] = set()
        if self.row is not None and converted:
            present = set(
                ChatKitThreadItem.objects.filter(
                    thread=self.row, item_id__in=[entry.item.id for entry in converted]
                ).values_list("item_id", flat=True)
            )
        new = [entry for entry in converted if entry.item.id not in present]
        self.added += len(new)
        self.summary.items_added += len(new)
        self.kept += sum(not entry.mapped for entry in new)
        self.summary.kept_whole.update(entry.managed_type for entry in new if not entry.mapped)
        if self.dry_run:
            return
        now = timezone.now()
        with transaction.atomic():
            if self.row is None:
                self.row = ChatKitThread.objects.create(
                    id=self.thread_id,
                    visitor_id=self.visitor_id,
                    **thread_fields(managed_thread_metadata(self.managed)),
                )
            ChatKitThreadItem.objects.bulk_create(
                [
                    ChatKitThreadItem(thread=self.row, item_id=entry.item.id, **item_fields(entry.item))
                    for entry in new
                ],
                ignore_conflicts=True,
            )
            updates: dict[str, Any] = {"imported_at": now}
            if cursor:
                updates["import_cursor"] = cursor
            if new:
                updates["updated_at"] = now
            ChatKitThread.objects.filter(pk=self.row.pk).update(**updates)

    def _report(self, existed: bool) -> None:
        added = f"{'would add' if self.dry_run else 'added'} {self.added} items"
        if self.kept:
            added += f" ({self.kept} kept whole)"
        thread = f"{self.position} {self.thread_id} of {self.visitor_id}"
        if not existed:
            self.summary.threads_created += 1
            self.progress(f"{thread}: new thread, {added}")
        elif self.added:
            self.summary.threads_updated += 1
            self.progress(f"{thread}: {added}")
        else:
            self.summary.threads_unchanged += 1
            self.progress(f"{self.position} {self.thread_id}: up to date")


def managed_threads_import(
    *,
    user: str | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
    max_retries: int = DEFAULT_RETRIES,
    progress: Callable[[str], None] = lambda line: None,
) -> ImportSummary:
    """Import every managed thread (or `user`'s, or those updated since `since`) and its new items.

    `dry_run` reads everything and writes nothing. Raises ImportStopped when OpenAI refuses
    or stays unreachable after `max_retries` tries; everything imported before is kept.
    """
    summary = ImportSummary()
    try:
        listed = list(openai_gateway.threads_list(user=user, max_retries=max_retries))
    except (NotConfigured, ManagedChatKitGone, UpstreamError) as exc:
        raise ImportStopped(_refusal(exc), summary) from exc
    summary.threads_listed = len(listed)
    progress(f"{len(listed)} managed threads to check" + (", dry run: nothing is written" if dry_run else ""))
    rows = ChatKitThread.objects.in_bulk([str(managed["id"]) for managed in listed])
    for number, managed in enumerate(listed, 1):
        thread = _ThreadRun(
            managed=managed,
            position=f"[{number}/{len(listed)}]",
            dry_run=dry_run,
            max_retries=max_retries,
            summary=summary,
            progress=progress,
            row=rows.get(str(managed["id"])),
        )
        if thread.row is not None and thread.row.visitor_id != thread.visitor_id:
            summary.threads_conflicting += 1
            progress(
                f"{thread.position} {thread.thread_id}: left alone, another visitor has a thread with this id"
            )
            continue
        try:
            if since is not None and thread.row is None and not thread.newer_than(since):
                summary.threads_skipped += 1
                continue
            thread.run()
        except ThreadNotFound:
            summary.threads_gone += 1
            progress(f"{thread.position} {thread.thread_id}: no longer at OpenAI, skipped")
        except UpstreamError as exc:
            raise ImportStopped(
                f"Stopped at thread {thread.thread_id} ({number} of {len(listed)}): {_refusal(exc)} "
                "Everything imported before is kept; run the command again to continue.",
                summary,
            ) from exc
    return summary
