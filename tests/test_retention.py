from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from chatkit_api.models import (
    DeliveryReport,
    DeliveryState,
    EmailAudience,
    Transcript,
    TranscriptEmail,
    TranscriptStatus,
)
from chatkit_api.services import transcripts_purge

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_transcripts", *args, stdout=out)
    return out.getvalue()


def recorded(name: str, *, at: datetime) -> Transcript:
    """A sent transcript with its message and a delivery report, recorded at `at`."""
    with time_machine.travel(at, tick=False):
        transcript = Transcript.objects.create(
            thread_id=f"cthr_{name}",
            requested_by="visitor",
            name=name,
            email=f"{name}@visitor.example",
            phone="+44 20 7946 0000",
            details="Call after five.",
            status=TranscriptStatus.SENT,
            recipients=["leads@shop.example"],
            body_text=f"Name: {name}\n",
        )
        email = TranscriptEmail.objects.create(
            transcript=transcript,
            audience=EmailAudience.STAFF,
            to=["leads@shop.example"],
            reply_to=transcript.email,
            status=TranscriptStatus.SENT,
            ses_message_id=f"ses-{name}",
        )
        DeliveryReport.objects.create(
            email=email,
            recipient="leads@shop.example",
            state=DeliveryState.DELIVERED,
            reported_at=at,
            sns_message_id=f"sns-{name}",
        )
    return transcript


def remaining() -> list[str]:
    return sorted(Transcript.objects.values_list("name", flat=True))


def test_transcripts_past_the_retention_window_are_deleted_with_everything_they_own(settings):
    settings.TRANSCRIPT_RETENTION_DAYS = 365
    recorded("ancient", at=START)
    recorded("just_expired", at=START + timedelta(days=30))
    recorded("just_kept", at=START + timedelta(days=30, hours=2))
    recorded("recent", at=START + timedelta(days=390))

    with time_machine.travel(START + timedelta(days=395, hours=1), tick=False):
        out = purge()

    assert out == "Deleted 2 transcript(s) older than 365 days.\n"
    assert remaining() == ["just_kept", "recent"]
    assert set(TranscriptEmail.objects.values_list("ses_message_id", flat=True)) == {
        "ses-just_kept",
        "ses-recent",
    }
    assert set(DeliveryReport.objects.values_list("sns_message_id", flat=True)) == {
        "sns-just_kept",
        "sns-recent",
    }


def test_older_than_overrides_the_setting(settings):
    settings.TRANSCRIPT_RETENTION_DAYS = 365
    recorded("month_old", at=START)
    recorded("week_old", at=START + timedelta(days=24))

    with time_machine.travel(START + timedelta(days=31), tick=False):
        out = purge("--older-than", "30")

    assert out == "Deleted 1 transcript(s) older than 30 days.\n"
    assert remaining() == ["week_old"]


def test_dry_run_counts_and_deletes_nothing(settings):
    settings.TRANSCRIPT_RETENTION_DAYS = 90
    recorded("first", at=START)
    recorded("second", at=START + timedelta(days=5))
    recorded("kept", at=START + timedelta(days=100))

    with time_machine.travel(START + timedelta(days=120), tick=False):
        out = purge("--dry-run")

    assert out == (
        "Dry run: 2 transcript(s) older than 90 days would be deleted, recorded 2026-01-10 to 2026-01-15.\n"
    )
    assert remaining() == ["first", "kept", "second"]
    assert DeliveryReport.objects.count() == 3


def test_nothing_to_purge(settings):
    recorded("recent", at=START)

    with time_machine.travel(START + timedelta(days=1), tick=False):
        assert purge("--dry-run") == "Dry run: 0 transcript(s) older than 365 days would be deleted.\n"
        assert purge() == "Deleted 0 transcript(s) older than 365 days.\n"

    assert remaining() == ["recent"]


@pytest.mark.parametrize("days", ["0", "-3", "a week"])
def test_the_window_must_be_whole_days(days):
    recorded("recent", at=START)

    with pytest.raises(CommandError, match="--older-than"):
        purge("--older-than", days)

    assert remaining() == ["recent"]


def test_a_large_purge_runs_in_batches_of_bounded_queries(django_assert_max_num_queries):
    with time_machine.travel(START, tick=False):
        transcripts = Transcript.objects.bulk_create(
            Transcript(thread_id=f"cthr_{n}", requested_by="server", body_html="<p>" + "x" * 5000 + "</p>")
            for n in range(100)
        )
        TranscriptEmail.objects.bulk_create(
            TranscriptEmail(transcript=transcript, audience=EmailAudience.STAFF, to=["leads@shop.example"])
            for transcript in transcripts
        )

    # Per batch: the ids; the transcripts and their messages (ids only); deleting reports,
    # messages and transcripts; a savepoint and its release where the database has them.
    # And one last look that finds nothing left.
    with (
        time_machine.travel(START + timedelta(days=400), tick=False),
        django_assert_max_num_queries(3 * 8 + 1) as captured,
    ):
        assert transcripts_purge(older_than_days=365, batch_size=40) == 100

    assert not [query for query in captured.captured_queries if "body_html" in query["sql"]]
    assert Transcript.objects.count() == 0
    assert TranscriptEmail.objects.count() == 0
