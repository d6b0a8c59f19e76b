"""`manage.py purge_threads`: self-hosted threads past CHATKIT_THREAD_RETENTION_DAYS, and uploads
never sent in a message, deleted through the ORM, by hand or by the scheduled Lambda event."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db.models.signals import post_delete

from chatkit_api.models import (
    ChatKitAttachment,
    ChatKitThread,
    ChatKitThreadItem,
    Transcript,
    TranscriptStatus,
)
from chatkit_api.services import threads_purge
from chatkit_site.lambda_handler import ManagementCommandFailed, handler
from tests.lambda_events import scheduled_event

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_threads", *args, stdout=out)
    return out.getvalue()


def conversation(name: str, *, last_active: datetime, running_until: datetime | None = None) -> ChatKitThread:
    """A thread with a question, its answer and a photo, last written in at `last_active`."""
    with time_machine.travel(last_active, tick=False):
        thread = ChatKitThread.objects.create(
            id=f"thr_{name}",
            visitor_id="visitor_a",
            title=name,
            created_at=last_active - timedelta(minutes=5),
            data={"id": f"thr_{name}", "title": name},
            running_until=running_until,
        )
        for n, kind in enumerate(["user_message", "assistant_message"]):
            ChatKitThreadItem.objects.create(
                thread=thread, item_id=f"msg_{name}_{n}", type=kind, created_at=last_active, data={}
            )
        ChatKitAttachment.objects.create(
            id=f"atc_{name}",
            visitor_id="visitor_a",
            thread=thread,
            name="brakes.jpg",
            mime_type="image/jpeg",
            data={},
        )
    return thread


def upload(name: str, *, at: datetime) -> ChatKitAttachment:
    """A file uploaded at `at` for a message that was never sent."""
    with time_machine.travel(at, tick=False):
        return ChatKitAttachment.objects.create(
            id=f"atc_{name}", visitor_id="visitor_a", name=f"{name}.pdf", mime_type="application/pdf", data={}
        )


def transcript_of(thread: ChatKitThread, status: str) -> Transcript:
    return Transcript.objects.create(
        thread_id=thread.id, requested_by="visitor", status=status, body_text="Visitor: Brakes?\n"
    )


def threads_left() -> list[str]:
    return sorted(ChatKitThread.objects.values_list("id", flat=True))


def test_threads_idle_past_the_window_go_with_their_items_and_attachments(settings):
    settings.CHATKIT_THREAD_RETENTION_DAYS = 90
    conversation("ancient", last_active=START)
    conversation("just_expired", last_active=START + timedelta(days=30))
    conversation("just_kept", last_active=START + timedelta(days=30, hours=2))
    # Started long ago, written in lately: its age is its last activity.
    with time_machine.travel(START + timedelta(days=100), tick=False):
        revived = conversation("revived", last_active=START)
        ChatKitThreadItem.objects.create(
            thread=revived, item_id="msg_revived_late", type="user_message", created_at=START, data={}
        )
        revived.save(update_fields=["updated_at"])

    with time_machine.travel(START + timedelta(days=120, hours=1), tick=False):
        out = purge()

    assert out == (
        "Deleted 2 thread(s) idle for more than 90 days, with 4 item(s) and 2 attachment(s); "
        "deleted 0 upload(s) never sent in a message.\n"
    )
    assert threads_left() == ["thr_just_kept", "thr_revived"]
    assert set(ChatKitThreadItem.objects.values_list("thread_id", flat=True)) == {
        "thr_just_kept",
        "thr_revived",
    }
    assert sorted(ChatKitAttachment.objects.values_list("id", flat=True)) == ["atc_just_kept", "atc_revived"]


def test_a_thread_with_an_answer_running_is_never_purged_mid_answer(settings):
    settings.CHATKIT_THREAD_RETENTION_DAYS = 30
    now = START + timedelta(days=60)
    conversation("answering", last_active=START, running_until=now + timedelta(seconds=90))
    # A claim that ran out is what a process that died left behind.
    conversation("claim_ran_out", last_active=START, running_until=now - timedelta(seconds=1))

    with time_machine.travel(now, tick=False):
        out = purge()

    assert out.startswith("Deleted 1 thread(s) idle for more than 30 days")
    assert threads_left() == ["thr_answering"]
    assert ChatKitThreadItem.objects.filter(thread_id="thr_answering").count() == 2


def test_a_thread_an_unsent_transcript_refers_to_is_kept_and_a_sent_one_keeps_its_own_copy(settings):
    settings.CHATKIT_THREAD_RETENTION_DAYS = 30
    failed = transcript_of(conversation("mail_failed", last_active=START), TranscriptStatus.FAILED)
    pending = transcript_of(conversation("mail_pending", last_active=START), TranscriptStatus.PENDING)
    sent = transcript_of(conversation("mailed", last_active=START), TranscriptStatus.SENT)

    with time_machine.travel(START + timedelta(days=45), tick=False):
        out = purge()

    assert out == (
        "Deleted 1 thread(s) idle for more than 30 days, with 2 item(s) and 1 attachment(s); "
        "deleted 0 upload(s) never sent in a message.\n"
        "Kept 2 thread(s) past the window: a transcript that has not reached staff refers to each.\n"
    )
    assert threads_left() == ["thr_mail_failed", "thr_mail_pending"]
    # Every transcript is still there, the sent one with the conversation as it was mailed.
    assert set(Transcript.objects.values_list("pk", flat=True)) == {failed.pk, pending.pk, sent.pk}
    assert Transcript.objects.get(pk=sent.pk).body_text == "Visitor: Brakes?\n"

    # Once the failed transcript is sent, it no longer holds its thread.
    Transcript.objects.filter(pk=failed.pk).update(status=TranscriptStatus.SENT)
    with time_machine.travel(START + timedelta(days=46), tick=False):
        purge()
    assert threads_left() == ["thr_mail_pending"]


def test_dry_run_reports_and_deletes_nothing(settings):
    settings.CHATKIT_THREAD_RETENTION_DAYS = 30
    conversation("first", last_active=START)
    conversation("second", last_active=START + timedelta(days=4))
    transcript_of(conversation("awaiting_mail", last_active=START), TranscriptStatus.FAILED)
    conversation("recent", last_active=START + timedelta(days=50))
    upload("forgotten", at=START)

    with time_machine.travel(START + timedelta(days=51), tick=False):
        out = purge("--dry-run")

    assert out == (
        "Dry run: 2 thread(s) idle for more than 30 days, with 4 item(s) and 2 attachment(s) would be "
        "deleted, last active 2026-01-10 to 2026-01-14; "
        "1 upload(s) never sent in a message would be deleted.\n"
        "Kept 1 thread(s) past the window: a transcript that has not reached staff refers to each.\n"
    )
    assert threads_left() == ["thr_awaiting_mail", "thr_first", "thr_recent", "thr_second"]
    assert ChatKitThreadItem.objects.count() == 8
    assert ChatKitAttachment.objects.count() == 5


def test_nothing_to_purge():
    conversation("recent", last_active=START)

    with time_machine.travel(START + timedelta(days=1), tick=False):
        assert purge("--dry-run") == (
            "Dry run: 0 thread(s) idle for more than 365 days, with 0 item(s) and 0 attachment(s) would be "
            "deleted; 0 upload(s) never sent in a message would be deleted.\n"
        )
        assert purge("--verbosity", "0") == ""

    assert threads_left() == ["thr_recent"]


def test_uploads_never_sent_in_a_message_go_after_a_day():
    upload("abandoned", at=START)
    upload("just_uploaded", at=START + timedelta(hours=20))
    conversation("sent_with_a_photo", last_active=START)

    with time_machine.travel(START + timedelta(days=1, hours=1), tick=False):
        out = purge()

    assert out.endswith("; deleted 1 upload(s) never sent in a message.\n")
    assert sorted(ChatKitAttachment.objects.values_list("id", flat=True)) == [
        "atc_just_uploaded",
        "atc_sent_with_a_photo",
    ]


def test_every_attachment_is_deleted_as_a_row_of_its_own_so_its_file_can_go_with_it():
    conversation("old", last_active=START)
    upload("abandoned", at=START)
    heard: list[str] = []

    def record(sender, instance, **kwargs):
        heard.append(instance.pk)

    post_delete.connect(record, sender=ChatKitAttachment)
    try:
        with time_machine.travel(START + timedelta(days=400), tick=False):
            purge()
    finally:
        post_delete.disconnect(record, sender=ChatKitAttachment)

    assert sorted(heard) == ["atc_abandoned", "atc_old"]
    assert ChatKitAttachment.objects.count() == 0


def test_older_than_overrides_the_setting(settings):
    settings.CHATKIT_THREAD_RETENTION_DAYS = 365
    conversation("month_old", last_active=START)
    conversation("week_old", last_active=START + timedelta(days=24))

    with time_machine.travel(START + timedelta(days=31), tick=False):
        out = purge("--older-than", "30")

    assert out.startswith("Deleted 1 thread(s) idle for more than 30 days")
    assert threads_left() == ["thr_week_old"]


@pytest.mark.parametrize("days", ["0", "-3", "a week"])
def test_the_window_must_be_whole_days(days):
    conversation("old", last_active=START)

    with (
        time_machine.travel(START + timedelta(days=400), tick=False),
        pytest.raises(CommandError, match="--older-than"),
    ):
        purge("--older-than", days)

    assert threads_left() == ["thr_old"]


def test_a_large_purge_runs_in_batches():
    for n in range(7):
        conversation(f"old_{n}", last_active=START)
    conversation("recent", last_active=START + timedelta(days=399))

    with time_machine.travel(START + timedelta(days=400), tick=False):
        purged = threads_purge(older_than_days=365, batch_size=3)

    assert (purged.threads, purged.items, purged.attachments) == (7, 14, 7)
    assert threads_left() == ["thr_recent"]


def test_the_scheduled_lambda_event_purges_threads_as_well_as_transcripts(settings):
    settings.CHATKIT_THREAD_RETENTION_DAYS = 90
    conversation("old", last_active=START)
    conversation("recent", last_active=START + timedelta(days=80))
    upload("abandoned", at=START + timedelta(days=80))
    with time_machine.travel(START - timedelta(days=300), tick=False):
        Transcript.objects.create(
            thread_id="cthr_ancient", requested_by="server", status=TranscriptStatus.SENT
        )

    with time_machine.travel(START + timedelta(days=100), tick=False):
        result = handler(scheduled_event(), None)

    assert result["exit_code"] == 0
    assert "Deleted 1 transcript(s) older than 365 days." in result["output"]
    assert (
        "Deleted 1 thread(s) idle for more than 90 days, with 2 item(s) and 1 attachment(s); "
        "deleted 1 upload(s) never sent in a message." in result["output"]
    )
    assert threads_left() == ["thr_recent"]
    assert Transcript.objects.count() == 0


def test_a_failed_transcript_purge_still_purges_threads_and_fails_the_invocation(settings):
    settings.TRANSCRIPT_RETENTION_DAYS = 0  # refused by the transcript purge
    conversation("old", last_active=START)

    with (
        time_machine.travel(START + timedelta(days=400), tick=False),
        pytest.raises(ManagementCommandFailed, match=r"manage purge_transcripts exited 1: .*at least 1"),
    ):
        handler(scheduled_event(), None)

    assert threads_left() == []
