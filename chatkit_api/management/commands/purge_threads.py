"""Delete self-hosted threads nobody has written in for the retention window, with their
items and attachments, and files uploaded for a message that was never sent.

    manage.py purge_threads                  # idle longer than CHATKIT_THREAD_RETENTION_DAYS
    manage.py purge_threads --older-than 90
    manage.py purge_threads --dry-run

A thread's age is its last activity: the last message, answer or rename. A thread with an
answer being written is never deleted, nor one that a transcript which has not reached staff
refers to (its send may have to read the thread again). Run it daily, as purge_transcripts.
Deleted rows are gone: there is no undo.
"""

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db.models import Max, Min
from django.utils import timezone

from chatkit_api.management.arguments import retention_arguments
from chatkit_api.services import ThreadPurge, threads_past_retention, threads_purge, threads_purge_preview


class Command(BaseCommand):
    help = (
        "Delete self-hosted threads idle for more than DAYS days (default CHATKIT_THREAD_RETENTION_DAYS), "
        "with their items and attachments, and uploads never sent in a message."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        retention_arguments(
            parser, older_than="Days since a thread's last activity (default: CHATKIT_THREAD_RETENTION_DAYS)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"] or settings.CHATKIT_THREAD_RETENTION_DAYS
        verbosity = options["verbosity"]
        if options["dry_run"]:
            preview = threads_purge_preview(older_than_days=days)
            if verbosity:
                self.stdout.write(
                    f"Dry run: {self._threads(preview, days)} would be deleted{self._span(days)}; "
                    f"{self._uploads(preview)} would be deleted."
                )
                self._kept(preview)
            return
        purged = threads_purge(older_than_days=days)
        if verbosity:
            self.stdout.write(
                self.style.SUCCESS(f"Deleted {self._threads(purged, days)}; deleted {self._uploads(purged)}.")
            )
            self._kept(purged)

    @staticmethod
    def _threads(purge: ThreadPurge, days: int) -> str:
        return (
            f"{purge.threads} thread(s) idle for more than {days} days, with {purge.items} item(s) "
            f"and {purge.attachments} attachment(s)"
        )

    @staticmethod
    def _uploads(purge: ThreadPurge) -> str:
        return f"{purge.unsent_uploads} upload(s) never sent in a message"

    @staticmethod
    def _span(days: int) -> str:
        span = threads_past_retention(older_than_days=days).aggregate(
            oldest=Min("updated_at"), newest=Max("updated_at")
        )
        if span["oldest"] is None:
            return ""
        oldest, newest = timezone.localtime(span["oldest"]), timezone.localtime(span["newest"])
        return f", last active {oldest:%Y-%m-%d} to {newest:%Y-%m-%d}"

    def _kept(self, purge: ThreadPurge) -> None:
        if purge.kept_for_transcripts:
            self.stdout.write(
                f"Kept {purge.kept_for_transcripts} thread(s) past the window: a transcript that has "
                "not reached staff refers to each."
            )
