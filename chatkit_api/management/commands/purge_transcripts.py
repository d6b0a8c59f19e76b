"""Delete transcripts past the retention window, with their messages and delivery reports.

    manage.py purge_transcripts                  # older than TRANSCRIPT_RETENTION_DAYS
    manage.py purge_transcripts --older-than 90
    manage.py purge_transcripts --dry-run

Run it daily (cron, or a scheduled Lambda invocation) so that no visitor's details are kept
longer than the privacy notice says. Deleted rows are gone: there is no undo.
"""

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db.models import Count, Max, Min
from django.utils import timezone

from chatkit_api.management.arguments import retention_arguments
from chatkit_api.services import transcripts_past_retention, transcripts_purge


class Command(BaseCommand):
    help = (
        "Delete transcripts recorded more than DAYS days ago (default TRANSCRIPT_RETENTION_DAYS), "
        "with their messages and delivery reports."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        retention_arguments(
            parser, older_than="Retention window in days (default: TRANSCRIPT_RETENTION_DAYS)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"] or settings.TRANSCRIPT_RETENTION_DAYS
        verbosity = options["verbosity"]
        if options["dry_run"]:
            expired = transcripts_past_retention(older_than_days=days).aggregate(
                count=Count("id"), oldest=Min("created_at"), newest=Max("created_at")
            )
            if verbosity:
                span = ""
                if expired["count"]:
                    oldest = timezone.localtime(expired["oldest"])
                    newest = timezone.localtime(expired["newest"])
                    span = f", recorded {oldest:%Y-%m-%d} to {newest:%Y-%m-%d}"
                self.stdout.write(
                    f"Dry run: {expired['count']} transcript(s) older than {days} days "
                    f"would be deleted{span}."
                )
            return
        deleted = transcripts_purge(older_than_days=days)
        if verbosity:
            self.stdout.write(self.style.SUCCESS(f"Deleted {deleted} transcript(s) older than {days} days."))
