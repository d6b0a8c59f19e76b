import threading
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from chatkit_api.exceptions import TranscriptAlreadySent, TranscriptBeingSent
from chatkit_api.models import EmailAudience, Transcript, TranscriptEmail, TranscriptStatus
from chatkit_api.services import transcript_resend, transcripts_resend_queue
from tests.conftest import SENDER, STAFF, TOKEN
from tests.fake_chatkit import BASE_TIME, Hold, user_message

pytestmark = pytest.mark.django_db

UNVERIFIED_SENDER = "unverified@shop.example"


def resend(*args: str, verbosity: int = 1) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("resend_transcript", *args, verbosity=verbosity, stdout=out, stderr=err)
    except CommandError as exc:
        exc.stdout, exc.stderr = out.getvalue(), err.getvalue()  # type: ignore[attr-defined]
        raise
    return out.getvalue(), err.getvalue()


@pytest.fixture
def mail_transcript(fake_chatkit, ses, api):
    """Send a transcript through the API; returns the recorded row."""
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    def send(text: str = "please call me", **lead: str) -> Transcript:
        thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message(text)])
        api.post("/api/chatkit/transcript", {"threadId": thread.id, **lead}, format="json")
        return Transcript.objects.get(thread_id=thread.id)

    return send


@pytest.fixture
def ses_down(settings, ses):
    """SES refuses every message (an unverified sender) until `ses_down.recover()`."""

    class SesDown:
        def recover(self) -> None:
            ses.client.verify_email_identity(EmailAddress=UNVERIFIED_SENDER)

    settings.DEFAULT_FROM_EMAIL = UNVERIFIED_SENDER
    return SesDown()


def stuck_pending(fake_chatkit, *, minutes_ago: int) -> Transcript:
    """A transcript whose sending process died, `minutes_ago`, before it mailed anything."""
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("stuck")])
    with time_machine.travel(timezone.now() - timedelta(minutes=minutes_ago), tick=False):
        return Transcript.objects.create(
            thread_id=thread.id,
            visitor_id="visitor_abc",
            requested_by="server",
            recipients=[STAFF],
            sending_since=timezone.now(),
        )


def test_named_transcript_is_resent_and_the_attempt_recorded(mail_transcript, ses_down, ses):
    transcript = mail_transcript()
    assert transcript.status == TranscriptStatus.FAILED
    ses_down.recover()

    out, err = resend(str(transcript.id))

    transcript.refresh_from_db()
    assert transcript.status == TranscriptStatus.SENT
    assert transcript.attempts == 2
    assert transcript.error == ""
    assert transcript.sent_at is not None
    [mail] = ses.sent()
    assert mail.destinations == [STAFF]
    assert "User: please call me" in mail.text
    assert [email.status for email in transcript.emails.all()] == ["failed", "sent"]
    assert out == "1 transcript(s) sent.\n"
    assert err == ""


def test_unknown_id_is_an_error_and_nothing_is_sent(mail_transcript, ses_down, ses):
    transcript = mail_transcript()
    ses_down.recover()

    with pytest.raises(CommandError, match=r"^Unknown transcript id\(s\): 987654\. Nothing was sent\.$"):
        resend(str(transcript.id), "987654")

    assert ses.sent() == []
    transcript.refresh_from_db()
    assert transcript.attempts == 1
    assert transcript.emails.count() == 1


def test_failed_resends_failed_and_stuck_pending_only(mail_transcript, ses_down, ses, fake_chatkit, settings):
    failed = mail_transcript("failed one")
    settings.DEFAULT_FROM_EMAIL = "Chat Bot <chat@shop.example>"
    sent = mail_transcript("sent one")
    settings.TRANSCRIPT_PENDING_TIMEOUT_MINUTES = 15
    stuck = stuck_pending(fake_chatkit, minutes_ago=16)
    in_flight = stuck_pending(fake_chatkit, minutes_ago=14)
    settings.DEFAULT_FROM_EMAIL = UNVERIFIED_SENDER
    ses_down.recover()
    mails_before = len(ses.sent())

    out, _ = resend("--failed", verbosity=2)

    resent = ses.sent()[mails_before:]
    assert sorted(mail.text.split("User: ")[1].strip() for mail in resent) == ["failed one", "stuck"]
    for transcript in (failed, stuck):
        transcript.refresh_from_db()
        assert transcript.status == TranscriptStatus.SENT
    stuck.refresh_from_db()
    # The attempt its process died in, and the resend.
    assert stuck.attempts == 2
    assert stuck.item_count == 1
    in_flight.refresh_from_db()
    assert in_flight.status == TranscriptStatus.PENDING
    assert in_flight.emails.count() == 0
    sent.refresh_from_db()
    assert sent.emails.count() == 1
    assert f"#{failed.id} " in out
    assert f"#{stuck.id} " in out
    assert out.endswith("2 transcript(s) sent.\n")


def test_failed_does_not_send_what_a_retry_sent_after_the_queue_was_read(mail_transcript, ses_down, ses):
    transcript = mail_transcript()
    queued = list(transcripts_resend_queue())
    ses_down.recover()
    # The visitor's retry sends it while the command works through the queue.
    Transcript.objects.filter(pk=transcript.pk).update(status=TranscriptStatus.SENT)

    with pytest.raises(TranscriptAlreadySent):
        transcript_resend(transcript=queued[0], unless_sent=True)

    assert ses.sent() == []
    transcript.refresh_from_db()
    assert (transcript.attempts, transcript.sending_since) == (1, None)


def test_since_narrows_the_selection(mail_transcript, ses_down, ses):
    with time_machine.travel("2026-11-01 09:00:00+00:00", tick=False):
        old = mail_transcript("old")
    with time_machine.travel("2026-11-20 09:00:00+00:00", tick=False):
        recent = mail_transcript("recent")
    ses_down.recover()

    resend("--failed", "--since", "2026-11-15")

    [mail] = ses.sent()
    assert "User: recent" in mail.text
    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.status, recent.status) == (TranscriptStatus.FAILED, TranscriptStatus.SENT)


def test_since_alone_resends_everything_recorded_since(mail_transcript, ses):
    with time_machine.travel("2026-11-01 09:00:00+00:00", tick=False):
        mail_transcript("old")
    with time_machine.travel("2026-11-20 09:00:00+00:00", tick=False):
        mail_transcript("recent")

    resend("--since", "2026-11-20T08:00")

    assert [mail.text.split("User: ")[1].strip() for mail in ses.sent()] == ["old", "recent", "recent"]


def test_to_sends_only_to_the_given_address(mail_transcript, ses_down, ses):
    transcript = mail_transcript()
    ses_down.recover()

    out, _ = resend(str(transcript.id), "--to", "ops@shop.example")

    [mail] = ses.sent()
    assert mail.destinations == ["ops@shop.example"]
    transcript.refresh_from_db()
    # A check mail is not a delivery to staff: the transcript stays in the queue.
    assert transcript.status == TranscriptStatus.FAILED
    assert transcript.emails.last().audience == EmailAudience.OVERRIDE
    assert out == "1 transcript(s) sent.\n"


def test_to_must_be_an_address(mail_transcript, ses):
    transcript = mail_transcript()

    with pytest.raises(CommandError, match="is not an email address"):
        resend(str(transcript.id), "--to", "not-an-address")

    assert len(ses.sent()) == 1


def test_refetch_reads_the_thread_again(mail_transcript, fake_chatkit, ses):
    transcript = mail_transcript("first")
    thread = fake_chatkit.threads[transcript.thread_id]
    thread.items.append(
        {
            **user_message("added later"),
            "id": "cthi_late",
            "thread_id": thread.id,
            "created_at": BASE_TIME + 60,
        }
    )

    resend(str(transcript.id))
    resend(str(transcript.id), "--refetch")

    _, stored, refetched = ses.sent()
    assert "added later" not in stored.text
    assert "User: added later" in refetched.text


def test_dry_run_shows_the_plan_and_changes_nothing(mail_transcript, ses_down, ses, settings):
    settings.ALLOW_USER_RECAP = True
    transcript = mail_transcript(mode="recap", email="zoe@visitor.example", name="Zoë")
    ses_down.recover()
    before = Transcript.objects.values().get(pk=transcript.pk)

    out, _ = resend("--failed", "--dry-run")

    assert ses.sent() == []
    assert Transcript.objects.values().get(pk=transcript.pk) == before
    assert TranscriptEmail.objects.count() == 2
    created = timezone.localtime(transcript.created_at)
    assert out == (
        f"#{transcript.id} ({created:%Y-%m-%d %H:%M}, Zoë): would send to {STAFF}, zoe@visitor.example\n"
        "Dry run: 1 transcript(s) would be sent; nothing was sent.\n"
    )


def test_a_failed_send_is_recorded_and_the_command_fails(mail_transcript, ses_down, ses):
    transcript = mail_transcript()

    with pytest.raises(CommandError) as failure:
        resend(str(transcript.id))

    assert failure.value.returncode == 1
    assert str(failure.value) == f"0 of 1 transcript(s) sent; not sent: #{transcript.id}."
    assert "MessageRejected" in failure.value.stderr
    transcript.refresh_from_db()
    assert transcript.attempts == 2
    assert "MessageRejected" in transcript.error
    assert [email.status for email in transcript.emails.all()] == ["failed", "failed"]


def test_many_show_progress_and_verbosity_is_respected(settings, mailoutbox):
    # Output is what this is about: Django's in-memory mail backend keeps it quick.
    settings.SES_TO_EMAIL = [STAFF]
    Transcript.objects.bulk_create(
        Transcript(
            thread_id=f"cthr_{n}",
            requested_by="server",
            status=TranscriptStatus.FAILED,
            recipients=[STAFF],
            subject=f"[Chat] Visitor {n} - quote",
            body_text=f"Mode: quote\n\n---\n\nvisitor {n}\n",
            body_html=f"<p>visitor {n}</p>",
        )
        for n in range(25)
    )

    quiet, _ = resend("--failed", verbosity=0)

    assert quiet == ""
    assert len(mailoutbox) == 25
    Transcript.objects.update(status=TranscriptStatus.FAILED)

    out, _ = resend("--failed")

    lines = out.splitlines()
    assert lines[:2] == ["2 of 25 done, 0 failed", "4 of 25 done, 0 failed"]
    assert lines[-2:] == ["24 of 25 done, 0 failed", "25 transcript(s) sent."]
    assert len(lines) == 13
    assert len(mailoutbox) == 50


def test_missing_configuration_stops_before_anything_is_sent(mail_transcript, ses_down, ses, settings):
    transcript = mail_transcript()
    ses_down.recover()
    settings.SES_TO_EMAIL = []

    with pytest.raises(CommandError, match="SES_TO_EMAIL is not set"):
        resend("--failed")

    assert ses.sent() == []
    transcript.refresh_from_db()
    assert transcript.attempts == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Name transcript ids, or use --failed or --since."),
        (("1", "--failed"), "Name transcript ids or use --failed, not both."),
        (("--since", "last tuesday"), "is not a date"),
    ],
)
def test_unclear_requests_are_errors(args, message, ses):
    with pytest.raises(CommandError, match=message):
        resend(*args)


# --- resends at once ------------------------------------------------------------------------


@pytest.fixture
def failed_transcript(send_trouble, settings):
    """A transcript whose mail failed, and SES working again (through `send_trouble`)."""
    settings.SES_TO_EMAIL = [STAFF]
    settings.DEFAULT_FROM_EMAIL = SENDER
    return Transcript.objects.create(
        thread_id="cthr_failed",
        requested_by="server",
        name="Sam",
        status=TranscriptStatus.FAILED,
        attempts=1,
        recipients=[STAFF],
        subject="[Chat] Sam - quote",
        body_text="Mode: quote\n\n---\n\n[2026-11-25 16:49 UTC] User: call me back\n",
        body_html="<p>call me back</p>",
    )


def admin_resend(client, transcript: Transcript) -> list[str]:
    """The admin's Resend action on the transcript; the messages the next page shows."""
    response = client.post(
        reverse("admin:chatkit_api_transcript_changelist"),
        {"action": "resend", "_selected_action": [str(transcript.pk)]},
        follow=True,
    )
    return [str(message) for message in response.context["messages"]]


def command_resend(transcript: Transcript) -> str:
    """`resend_transcript <id>`: what it printed, or the error it ended with."""
    try:
        out, err = resend(str(transcript.id))
    except CommandError as exc:
        return f"CommandError: {exc}"
    return out + err


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["command", "admin"])
def test_two_resends_at_once_send_once_and_the_other_says_it_is_being_sent(
    first, admin_client, failed_transcript, send_trouble, ses
):
    transcript = failed_transcript
    resends = {
        "command": lambda: command_resend(transcript),
        "admin": lambda: admin_resend(admin_client, transcript),
    }
    second = "admin" if first == "command" else "command"
    slow_ses = Hold()
    send_trouble.holds.append(slow_ses)
    results = {}

    def resend_first():
        try:
            results[first] = resends[first]()
        finally:
            connections.close_all()

    worker = threading.Thread(target=resend_first)
    worker.start()
    assert slow_ses.arrived.wait(timeout=10), f"the {first} never reached SES"
    results[second] = resends[second]()
    slow_ses.release.set()
    worker.join()

    label = f"#{transcript.id} ({timezone.localtime(transcript.created_at):%Y-%m-%d %H:%M}, Sam)"
    said_by_the_loser = {
        "command": (
            f"{label}: skipped. This transcript is already being sent. Try again shortly.\n"
            f"0 of 1 transcript(s) sent; skipped: #{transcript.id}.\n"
        ),
        "admin": [
            f"Already being sent by another resend or request, so not sent again: #{transcript.id}. "
            "Their pages show how that send went."
        ],
    }
    said_by_the_winner = {"command": "1 transcript(s) sent.\n", "admin": ["1 transcript(s) sent again."]}
    assert results == {first: said_by_the_winner[first], second: said_by_the_loser[second]}
    assert len(ses.sent()) == 1
    transcript.refresh_from_db()
    assert (transcript.status, transcript.attempts) == (TranscriptStatus.SENT, 2)
    assert transcript.sending_since is None
    assert [email.status for email in transcript.emails.all()] == [TranscriptStatus.SENT]


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_resends_sends_once(failed_transcript, send_trouble, ses):
    transcript = failed_transcript
    slow_ses = Hold()
    send_trouble.holds.append(slow_ses)
    outcomes: list[str] = []
    finished = threading.Semaphore(0)

    def resend_it():
        try:
            transcript_resend(transcript=Transcript.objects.get(pk=transcript.pk))
            outcomes.append("sent")
        except TranscriptBeingSent:
            outcomes.append("being sent")
        finally:
            connections.close_all()
            finished.release()

    workers = [threading.Thread(target=resend_it) for _ in range(4)]
    for worker in workers:
        worker.start()
    # The winner waits in SES until every other resend has answered.
    assert slow_ses.arrived.wait(timeout=10)
    for _ in range(3):
        assert finished.acquire(timeout=10)
    slow_ses.release.set()
    for worker in workers:
        worker.join()

    assert sorted(outcomes) == ["being sent", "being sent", "being sent", "sent"]
    assert len(ses.sent()) == 1
