"""Mail recorded transcripts again: named ones, or every one that never reached staff.

    manage.py resend_transcript 42 43
    manage.py resend_transcript --failed --since 2026-11-20
    manage.py resend_transcript 42 --to me@example.com --refetch
    manage.py resend_transcript --failed --dry-run

Every attempt is recorded beside the earlier ones (see `transcript_resend`). The command
exits with status 1 if any transcript could not be sent, so a scheduler notices. A transcript
that another process is sending (or, with --failed, that reached staff since the queue was
read) is skipped and reported: it is in hand, so that is no failure.
"""

from argparse import ArgumentParser, ArgumentTypeError
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.utils import timezone

from chatkit_api.exceptions import NotConfigured, ServiceError, TranscriptSendSkipped
from chatkit_api.management.arguments import date_or_moment
from chatkit_api.models import Transcript
from chatkit_api.services import transcript_resend, transcript_resend_recipients, transcripts_resend_queue

# With more transcripts than this, progress is reported about every tenth of the way.
PROGRESS_FROM = 20


def _address(value: str) -> str:
    try:
        validate_email(value)
    except ValidationError:
        raise ArgumentTypeError(f"{value!r} is not an email address.") from None
    return value


def _ids(transcript_ids: list[int]) -> str:
    return ", ".join(f"#{pk}" for pk in transcript_ids)


class Command(BaseCommand):
    help = (
        "Mail recorded transcripts again, by id or with --failed (failed, or left mid-send by a "
        "process that died, TRANSCRIPT_PENDING_TIMEOUT_MINUTES ago or more). Exits with status 1 "
        "if any send failed."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, metavar="ID", help="Transcript ids to resend.")
        parser.add_argument(
            "--failed",
            action="store_true",
            help="Every transcript that never reached staff: failed, or left mid-send by a dead process.",
        )
        parser.add_argument(
            "--since",
            type=date_or_moment,
            metavar="DATE",
            help="Only transcripts recorded on or after DATE (YYYY-MM-DD, or an ISO date and time).",
        )
        parser.add_argument(
            "--to",
            action="append",
            type=_address,
            metavar="ADDRESS",
            help="Send only to ADDRESS (repeatable), e.g. to check a mail; staff and visitor get nothing.",
        )
        parser.add_argument(
            "--refetch",
            action="store_true",
            help="Read the thread from OpenAI again instead of sending the stored text.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be sent; send and change nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        transcript_ids = self._selection(options["ids"], options["failed"], options["since"])
        verbosity = options["verbosity"]
        to = options["to"]
        total = len(transcript_ids)
        if total == 0:
            if verbosity:
                self.stdout.write("No transcript to resend.")
            return

        failed: list[int] = []
        skipped: list[int] = []
        progress_every = max(1, total // 10) if total > PROGRESS_FROM else 0
        for position, transcript_id in enumerate(transcript_ids, start=1):
            transcript = Transcript.objects.filter(pk=transcript_id).first()
            if transcript is None:
                # Purged since the selection was made.
                failed.append(transcript_id)
                self.stderr.write(f"#{transcript_id}: no longer exists.")
                continue
            created = timezone.localtime(transcript.created_at)
            label = f"#{transcript.id} ({created:%Y-%m-%d %H:%M}, {transcript.name or 'no name'})"
            if options["dry_run"]:
                recipients = ", ".join(transcript_resend_recipients(transcript=transcript, to=to))
                if verbosity:
                    self.stdout.write(f"{label}: would send to {recipients}")
                continue
            try:
                transcript_resend(
                    transcript=transcript,
                    refetch=options["refetch"],
                    to=to,
                    # The queue was read before the first send: a retry may have sent one since.
                    unless_sent=options["failed"],
                )
            except NotConfigured as exc:
                # Nothing was sent: the same would happen to every other transcript.
                raise CommandError(exc.message) from exc
            except TranscriptSendSkipped as exc:
                skipped.append(transcript.id)
                if verbosity:
                    self.stdout.write(f"{label}: skipped. {exc.message}")
            except ServiceError as exc:
                failed.append(transcript.id)
                self.stderr.write(f"{label}: not sent. {exc.message}")
            else:
                if verbosity >= 2:
                    self.stdout.write(f"{label}: sent")
            if verbosity and progress_every and position % progress_every == 0 and position < total:
                self.stdout.write(f"{position} of {total} done, {len(failed)} failed")

        self._summary(total, failed, skipped, dry_run=options["dry_run"], verbosity=verbosity)

    def _selection(self, ids: list[int], failed: bool, since: datetime | None) -> list[int]:
        if ids and failed:
            raise CommandError("Name transcript ids or use --failed, not both.")
        if not ids and not failed and since is None:
            raise CommandError("Name transcript ids, or use --failed or --since.")
        if ids:
            wanted = list(dict.fromkeys(ids))
            known = set(Transcript.objects.filter(pk__in=wanted).values_list("pk", flat=True))
            unknown = [str(pk) for pk in wanted if pk not in known]
            if unknown:
                raise CommandError(f"Unknown transcript id(s): {', '.join(unknown)}. Nothing was sent.")
            queryset = Transcript.objects.filter(pk__in=wanted)
            if since is not None:
                queryset = queryset.filter(created_at__gte=since)
            selected = set(queryset.values_list("pk", flat=True))
            return [pk for pk in wanted if pk in selected]
        if failed:
            return list(transcripts_resend_queue(since=since).values_list("pk", flat=True))
        return list(
            Transcript.objects.filter(created_at__gte=since)
            .order_by("created_at", "id")
            .values_list("pk", flat=True)
        )

    def _summary(
        self, total: int, failed: list[int], skipped: list[int], *, dry_run: bool, verbosity: int
    ) -> None:
        if dry_run:
            if verbosity:
                self.stdout.write(f"Dry run: {total} transcript(s) would be sent; nothing was sent.")
            return
        sent = total - len(failed) - len(skipped)
        skipped_note = f"; skipped: {_ids(skipped)}" if skipped else ""
        if failed:
            raise CommandError(
                f"{sent} of {total} transcript(s) sent; not sent: {_ids(failed)}{skipped_note}."
            )
        if verbosity and skipped:
            self.stdout.write(self.style.WARNING(f"{sent} of {total} transcript(s) sent{skipped_note}."))
        elif verbosity:
            self.stdout.write(self.style.SUCCESS(f"{total} transcript(s) sent."))
