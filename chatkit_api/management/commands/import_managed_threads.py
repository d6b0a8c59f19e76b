"""Copy the managed ChatKit threads that OpenAI keeps for this project into the self-hosted store.

    manage.py import_managed_threads --dry-run
    manage.py import_managed_threads
    manage.py import_managed_threads --user visitor_abc123
    manage.py import_managed_threads --since 2026-11-25

Run it before switching to self-hosted mode, and once more after the switch, before
Agent Builder shuts down on 2026-11-30: each run adds only what is new, and a run that was
interrupted continues where it stopped (see `chatkit_api.managed_import`). Needs only
OPENAI_API_KEY, of the OpenAI project whose workflow served the site.
"""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from chatkit_api.managed_import import DEFAULT_RETRIES, ImportStopped, ImportSummary, managed_threads_import
from chatkit_api.management.arguments import date_or_moment


class Command(BaseCommand):
    help = (
        "Copy managed ChatKit threads (Agent Builder) and their items from OpenAI into the "
        "self-hosted store. Safe to run again: only new threads and items are added."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--user", metavar="ID", help="Only the threads of this ChatKit user (a visitor id)."
        )
        parser.add_argument(
            "--since",
            type=date_or_moment,
            metavar="DATE",
            help="Only threads started or continued on or after DATE (YYYY-MM-DD, or an ISO date and time).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Read everything, say what would be added, write nothing."
        )
        parser.add_argument(
            "--retries",
            type=int,
            default=DEFAULT_RETRIES,
            metavar="N",
            help=f"Try again N times after a rate limit or server error (default {DEFAULT_RETRIES}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = options["verbosity"]
        if options["retries"] < 0:
            raise CommandError("--retries must be 0 or more.")
        try:
            summary = managed_threads_import(
                user=options["user"],
                since=options["since"],
                dry_run=options["dry_run"],
                max_retries=options["retries"],
                progress=self.stdout.write if verbosity else lambda line: None,
            )
        except ImportStopped as stopped:
            self._summary(stopped.summary, dry_run=options["dry_run"])
            raise CommandError(stopped.reason) from stopped
        if verbosity:
            self._summary(summary, dry_run=options["dry_run"])

    def _summary(self, summary: ImportSummary, *, dry_run: bool) -> None:
        would = "would be " if dry_run else ""
        lines = [
            f"Threads: {summary.threads_listed} listed, {summary.threads_created} {would}new, "
            f"{summary.threads_updated} {would}brought up to date, "
            f"{summary.threads_unchanged} already up to date.",
            f"Items: {summary.items_read} read, {summary.items_added} {would}added.",
        ]
        if summary.threads_skipped:
            lines.append(f"{summary.threads_skipped} thread(s) not updated since --since: skipped.")
        if summary.threads_gone:
            lines.append(f"{summary.threads_gone} thread(s) deleted at OpenAI while the import ran: skipped.")
        if summary.threads_conflicting:
            lines.append(
                f"{summary.threads_conflicting} thread(s) left alone: a thread with the same id "
                "belongs to another visitor here."
            )
        if summary.kept_whole:
            kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(summary.kept_whole.items()))
            lines.append(
                f"Items of types this service cannot show in the widget, {would}kept whole "
                f"(hidden in the widget, shown in transcripts): {kinds}."
            )
        if dry_run:
            lines.append("Dry run: nothing was written.")
        for line in lines:
            self.stdout.write(line)
