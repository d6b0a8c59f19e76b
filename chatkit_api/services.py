"""Business actions: create a ChatKit session, send a transcript, resend one, purge old
transcripts and self-hosted threads. What SES reports about the mail is recorded by
chatkit_api.delivery.

Each service owns the order of its side effects. A transcript is recorded before anything
is mailed, and every failure after that point leaves the row `failed` with its error, so
nothing a visitor typed is lost when SES is down or the thread cannot be read. Before it, the
thread's owner is looked up: for a managed thread OpenAI answers that, and while it cannot,
the request is refused (502) without a record, since the thread may not be the caller's.

Whatever sends a transcript (a request, a retry of it, a resend) first claims its send in the
database, and only one claim holds at a time, so two processes never mail it together. A
process that dies mid-send leaves its claim behind; once the claim is older than any request
can run, the next send takes it over (see _transcript_claim_send).

Where a thread lives depends on CHATKIT_MODE: OpenAI keeps managed threads, this service's
database keeps self-hosted ones. Both sources answer the same two questions (who owns a
thread, what are its items) in the same shapes, so the transcript rules and the mail are one.
"""

import logging
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from chatkit_api import local_threads, openai_gateway
from chatkit_api.exceptions import (
    EmailSendFailed,
    NotConfigured,
    NotServedInThisMode,
    ServiceError,
    ThreadNotFound,
    TranscriptAlreadySent,
    TranscriptBeingSent,
    UpstreamError,
)
from chatkit_api.idempotency import Claim, idempotency_attach, idempotency_claim, idempotency_release
from chatkit_api.mail import MailError, OutgoingEmail, email_send
from chatkit_api.models import (
    ChatKitAttachment,
    ChatKitThread,
    ChatKitThreadItem,
    DeliveryState,
    EmailAudience,
    Transcript,
    TranscriptEmail,
    TranscriptStatus,
)
from chatkit_api.ratelimits import (
    SESSIONS_PER_IP,
    TRANSCRIPTS_PER_IP,
    TRANSCRIPTS_PER_THREAD,
    VISITOR_COPIES_PER_ADDRESS,
    VISITOR_COPIES_PER_IP,
    VISITOR_COPIES_PER_VISITOR,
    VISITOR_COPIES_SITE_WIDE,
    ip_subject,
    rate_limit_consume,
)
from chatkit_api.rendering import Lead, transcript_render

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """Who is calling the transcript endpoint: a visitor's browser or a trusted server."""

    visitor_id: str | None = None
    # The address the platform saw (REMOTE_ADDR), which rate limits count by.
    client_ip: str = ""

    # DRF's IsAuthenticated reads this: a Caller only exists once authentication passed.
    is_authenticated = True

    @property
    def kind(self) -> str:
        return "server" if self.visitor_id is None else "visitor"

    @property
    def identity(self) -> str:
        """Whose Idempotency-Keys these are: each visitor's own, and the servers' together."""
        return self.visitor_id or "server"


# What each endpoint cannot work without; a missing one is a 503 that names it.
SESSION_SETTINGS = ("OPENAI_API_KEY", "CHATKIT_WORKFLOW_ID")
CHATKIT_SETTINGS = ("OPENAI_API_KEY",)


def settings_missing(*, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not getattr(settings, name)]


def _require_settings(*names: str) -> None:
    missing = settings_missing(names=names)
    if missing:
        raise NotConfigured(missing)


def self_hosted() -> bool:
    return settings.CHATKIT_MODE == "self_hosted"


def _thread_source() -> ModuleType:
    """The module whose `thread_owner` and `thread_items` read threads in this mode."""
    return local_threads if self_hosted() else openai_gateway


def _thread_source_settings() -> tuple[str, ...]:
    # Reading a managed thread calls OpenAI; a self-hosted one is in the database.
    return () if self_hosted() else ("OPENAI_API_KEY",)


def transcript_settings() -> tuple[str, ...]:
    """The settings a transcript needs in this mode."""
    return (*_thread_source_settings(), "SES_TO_EMAIL")


def chatkit_session_create(
    *, visitor_id: str, locale: str, page_url: str, client_ip: str
) -> openai_gateway.ChatKitSession:
    if self_hosted():
        raise NotServedInThisMode(
            "Not found: this service runs ChatKit self-hosted (CHATKIT_MODE=self_hosted), so there "
            "are no client secrets. Point the widget's api.url at /api/chatkit instead."
        )
    _require_settings(*SESSION_SETTINGS)
    rate_limit_consume(limit=SESSIONS_PER_IP, subject=ip_subject(client_ip))
    return openai_gateway.session_create(
        user=visitor_id,
        workflow_id=settings.CHATKIT_WORKFLOW_ID,
        workflow_version=settings.CHATKIT_WORKFLOW_VERSION,
        state_variables={"locale": locale or "en", "page_url": page_url or ""},
        expires_after_seconds=settings.CHATKIT_SESSION_EXPIRES_SECONDS,
        max_requests_per_minute=settings.CHATKIT_SESSION_MAX_REQUESTS_PER_MINUTE,
    )


def _lead_of(transcript: Transcript) -> Lead:
    # The Lead's fields are the transcript's columns of the same names.
    return Lead(**{field.name: getattr(transcript, field.name) for field in fields(Lead)})


def _wants_visitor_copy(lead: Lead) -> bool:
    return settings.ALLOW_USER_RECAP and lead.mode == "recap" and bool(lead.email)


# Mailbox providers that ignore dots in the name: every spelling reaches one inbox.
_DOTS_IGNORED = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def _mailbox_of(address: str) -> str:
    """The inbox an address reaches, as far as it can be told: letter case, a `+tag` and,
    where the provider ignores them, dots make no other inbox."""
    name, _, domain = address.lower().rpartition("@")
    name = name.split("+", 1)[0]
    if domain in _DOTS_IGNORED:
        name, domain = name.replace(".", ""), _DOTS_IGNORED[domain]
    return f"{name}@{domain}"


def _visitor_copy_count(*, caller: Caller, owner: str, email: str) -> None:
    """Count a visitor's copy against its limits, narrowest first, so that one sender used up
    does not spend the site's."""
    rate_limit_consume(limit=VISITOR_COPIES_PER_ADDRESS, subject=_mailbox_of(email))
    rate_limit_consume(limit=VISITOR_COPIES_PER_VISITOR, subject=owner)
    if caller.visitor_id is not None:
        # A server relays for many visitors from one address.
        rate_limit_consume(limit=VISITOR_COPIES_PER_IP, subject=ip_subject(caller.client_ip))
    rate_limit_consume(limit=VISITOR_COPIES_SITE_WIDE, subject="site")


def _audiences(*, visitor_copy: bool) -> list[str]:
    return [EmailAudience.STAFF.value] + ([EmailAudience.VISITOR.value] if visitor_copy else [])


def _audience_addresses(audience: str, *, visitor_email: str) -> list[str]:
    if audience == EmailAudience.STAFF:
        return list(settings.SES_TO_EMAIL)
    return [visitor_email]


def _addresses(audiences: list[str], *, visitor_email: str) -> list[str]:
    return [
        address
        for audience in audiences
        for address in _audience_addresses(audience, visitor_email=visitor_email)
    ]


# Recorded when a send is taken over from a process that died holding it: what became of
# the messages it handed to SES without an answer is not known.
ABANDONED_ATTEMPT = (
    "The process sending this stopped (it was killed or timed out) before it recorded the outcome."
)
ABANDONED_MESSAGE = "The process sending this stopped before SES answered: it may or may not have gone out."


def _abandoned_before(now: datetime) -> datetime:
    """A send claimed before this belongs to a process that died: no request runs that long."""
    return now - timedelta(minutes=settings.TRANSCRIPT_PENDING_TIMEOUT_MINUTES)


def transcript_send_abandoned(transcript: Transcript) -> bool:
    """The transcript's send was claimed by a process that died; the next send takes it over."""
    since = transcript.sending_since
    return since is not None and since < _abandoned_before(timezone.now())


def _transcript_claim_send(transcript: Transcript, *, unless_sent: bool = False) -> bool:
    """Claim the transcript's next send for the caller; False while another send holds it,
    or with `unless_sent` once the transcript has reached staff.

    The claim is a conditional UPDATE committed before anything is read or mailed: of several
    processes exactly one gets it, and it outlives a process that dies mid-send. A claim older
    than TRANSCRIPT_PENDING_TIMEOUT_MINUTES is such a process's. Taking it over records the
    unfinished attempt as failed and the messages it handed to SES without an answer as
    abandoned, so that the resend mails them again. The row is read again, as the claim left it.
    """
    now = timezone.now()
    rows = Transcript.objects.filter(pk=transcript.pk)
    if unless_sent:
        rows = rows.exclude(status=TranscriptStatus.SENT)
    claimed = rows.filter(sending_since__isnull=True).update(sending_since=now, updated_at=now)
    if not claimed:
        claimed = rows.filter(sending_since__lt=_abandoned_before(now)).update(
            sending_since=now,
            updated_at=now,
            attempts=F("attempts") + 1,
            error=Value(ABANDONED_ATTEMPT),
            # As after any failed attempt, a transcript that reached staff once stays `sent`.
            status=Case(
                When(status=TranscriptStatus.SENT, then=Value(TranscriptStatus.SENT)),
                default=Value(TranscriptStatus.FAILED),
            ),
        )
        if claimed:
            transcript.emails.filter(status=TranscriptStatus.PENDING).update(
                status=TranscriptStatus.FAILED, error=ABANDONED_MESSAGE
            )
    transcript.refresh_from_db()
    return bool(claimed)


def _transcript_release(transcript: Transcript) -> None:
    transcript.sending_since = None
    transcript.save(update_fields=["sending_since", "updated_at"])


def _transcript_fetch_and_render(transcript: Transcript) -> None:
    """Read the whole thread and store the rendered mail on the row.

    A thread that cannot be read is recorded on the row as the attempt's failure.
    """
    # A managed widget sends its feedback to OpenAI, whose ChatKit API has no way to read it.
    feedback = local_threads.thread_feedback(transcript.thread_id) if self_hosted() else {}
    try:
        rendered = transcript_render(
            lead=_lead_of(transcript),
            items=_thread_source().thread_items(transcript.thread_id),
            feedback=feedback,
        )
    except ServiceError as exc:
        _transcript_record_failure(transcript, exc.message)
        raise
    transcript.subject = rendered.subject
    transcript.body_text = rendered.text
    transcript.body_html = rendered.html
    transcript.item_count = rendered.item_count
    transcript.save(update_fields=["subject", "body_text", "body_html", "item_count", "updated_at"])
    if rendered.unreadable:
        # Staff would get a conversation with holes they cannot see the cause of; what could be
        # read is kept for them to look at, and to resend as it is.
        error = UpstreamError(
            f"{rendered.unreadable} item(s) of the thread could not be read, so the transcript was "
            "not sent. What could be read is kept, and it can be resent."
        )
        _transcript_record_failure(transcript, error.message)
        raise error


def _transcript_record_failure(transcript: Transcript, error: str) -> None:
    # A transcript that reached staff once stays `sent`: a failed extra attempt must not
    # put it back in the queue that `resend_transcript --failed` works through.
    if transcript.status != TranscriptStatus.SENT:
        transcript.status = TranscriptStatus.FAILED
    transcript.error = error
    transcript.attempts += 1
    # The attempt is over: the next send may claim the transcript.
    transcript.sending_since = None
    transcript.save(
        update_fields=["status", "error", "attempts", "delivery_state", "sending_since", "updated_at"]
    )


def _outgoing(transcript: Transcript, audience: str, override_to: list[str]) -> OutgoingEmail:
    if audience == EmailAudience.VISITOR:
        # The visitor's copy must not answer back to the visitor themselves.
        reply_to = settings.SES_REPLY_TO
    else:
        reply_to = transcript.email or settings.SES_REPLY_TO
    if audience == EmailAudience.OVERRIDE:
        to = override_to
    else:
        to = _audience_addresses(audience, visitor_email=transcript.email)
    return OutgoingEmail(
        subject=settings.VISITOR_COPY_SUBJECT if audience == EmailAudience.VISITOR else transcript.subject,
        text=transcript.body_text,
        html=transcript.body_html,
        to=to,
        reply_to=reply_to,
    )


def _email_deliver(
    transcript: Transcript, audience: str, override_to: list[str] | None = None
) -> TranscriptEmail:
    outgoing = _outgoing(transcript, audience, override_to or [])
    email = TranscriptEmail.objects.create(
        transcript=transcript, audience=audience, to=outgoing.to, reply_to=outgoing.reply_to
    )
    try:
        email.ses_message_id = email_send(outgoing)
    except MailError as exc:
        email.status, email.error = TranscriptStatus.FAILED, str(exc)
    else:
        email.status, email.sent_at = TranscriptStatus.SENT, timezone.now()
    email.save(update_fields=["ses_message_id", "status", "error", "sent_at"])
    return email


def _transcript_deliver(transcript: Transcript, audiences: list[str]) -> bool:
    """Mail the stored transcript to each audience; True when every message went out."""
    emails = [_email_deliver(transcript, audience) for audience in audiences]
    if any(email.status == TranscriptStatus.SENT for email in emails):
        # A new latest message has no reports yet; the older messages' reports stay with them.
        transcript.delivery_state = DeliveryState.UNREPORTED
    errors = [
        f"{email.get_audience_display()}: {email.error}"
        for email in emails
        if email.status == TranscriptStatus.FAILED
    ]
    if errors:
        _transcript_record_failure(transcript, "\n".join(errors))
        return False
    transcript.status, transcript.error = TranscriptStatus.SENT, ""
    transcript.attempts += 1
    transcript.sent_at = timezone.now()
    transcript.sending_since = None
    transcript.save(
        update_fields=[
            "status",
            "error",
            "attempts",
            "sent_at",
            "delivery_state",
            "sending_since",
            "updated_at",
        ]
    )
    return True


def _transcript_complete(transcript: Transcript, audiences: list[str], *, fetch: bool) -> Transcript:
    """Read the thread (unless its text is stored already) and mail it to `audiences`."""
    if fetch:
        _transcript_fetch_and_render(transcript)
    if not _transcript_deliver(transcript, audiences):
        raise EmailSendFailed(
            "The transcript was recorded but the email could not be sent. It is kept and can be resent.",
            id=transcript.id,
        )
    return transcript


def _transcript_record_and_send(*, caller: Caller, thread_id: str, lead: Lead, claim: Claim) -> Transcript:
    owner = _thread_source().thread_owner(thread_id)
    if caller.visitor_id is not None and not constant_time_compare(owner, caller.visitor_id):
        raise ThreadNotFound()

    visitor_copy = _wants_visitor_copy(lead)
    rate_limit_consume(limit=TRANSCRIPTS_PER_THREAD, subject=thread_id)
    if visitor_copy:
        _visitor_copy_count(caller=caller, owner=owner, email=lead.email)
    audiences = _audiences(visitor_copy=visitor_copy)
    same = {
        "thread_id": thread_id,
        "visitor_id": owner,
        "requested_by": caller.kind,
        **asdict(lead),
        "visitor_copy": visitor_copy,
    }
    # Recorded (or found) and tied to the key together: a retry finds this transcript or none.
    with transaction.atomic():
        unsent = _transcript_unsent(same)
        transcript = unsent or Transcript.objects.create(
            **same,
            recipients=_addresses(audiences, visitor_email=lead.email),
            # Claimed as it is recorded: nothing else sends it while this request does.
            sending_since=timezone.now(),
        )
        idempotency_attach(claim=claim, transcript=transcript)
    if unsent is not None:
        # With the conversation as it is now: the visitor may have written more since.
        return _transcript_send_again(unsent, refetch=True)
    return _transcript_complete(transcript, audiences, fetch=True)


def _transcript_unsent(same: dict[str, object]) -> Transcript | None:
    """An earlier request's transcript that is this one and never reached staff.

    The same thread, asked for by the same caller (the same visitor, or a server) with the same
    lead, is the same transcript, however long after the earlier request this one comes: its
    mail failed or its process died, and staff have had no mail of it. Sending that one, instead
    of recording a second, leaves `resend_transcript --failed` nothing to mail twice.
    """
    return (
        Transcript.objects.filter(**same)
        .exclude(status=TranscriptStatus.SENT)
        .order_by("-created_at", "-id")
        .first()
    )


def transcript_send(*, caller: Caller, thread_id: str, lead: Lead, idempotency_key: str = "") -> Transcript:
    """Record the transcript of a thread with the lead details, then mail it, once per request.

    A visitor may only mail a thread they own; someone else's thread is reported as not
    found so that its existence is not revealed. Nothing is recorded or fetched beyond the
    owner lookup until that check passes.

    Visitors are limited per address; a server relays for many visitors from one address,
    so only the per-thread and per-recipient limits apply to it. Those two are counted
    after the owner check, so that nobody can use up the limits of a thread they do not own.

    A retry of the request (the same `idempotency_key`, or without one an identical request
    within TRANSCRIPT_DUPLICATE_WINDOW_SECONDS) answers with the transcript the first one
    recorded and mails nothing; if that transcript did not go out, the retry sends it again
    instead of recording another, unless it is still being sent (TranscriptBeingSent). Any
    later request for the same transcript that never reached staff sends that one too.
    """
    _require_settings(*transcript_settings())
    if caller.visitor_id is not None:
        rate_limit_consume(limit=TRANSCRIPTS_PER_IP, subject=ip_subject(caller.client_ip))
    claim = idempotency_claim(
        caller=caller.identity, key=idempotency_key, request={"threadId": thread_id, **asdict(lead)}
    )
    earlier = claim.record.transcript
    if claim.replay and earlier is not None:
        return earlier
    try:
        if earlier is not None:
            return _transcript_send_again(earlier)
        return _transcript_record_and_send(caller=caller, thread_id=thread_id, lead=lead, claim=claim)
    finally:
        idempotency_release(claim=claim)


def _transcript_send_again(transcript: Transcript, *, refetch: bool = False) -> Transcript:
    """Send a transcript that an earlier request (or try of this one) recorded, unless it
    reached staff; `refetch` reads the thread again instead of sending the stored text.

    Sent meanwhile (by a resend): answered as sent. Still being sent by another process, or
    by one that died too recently to tell: TranscriptBeingSent.
    """
    if not _transcript_claim_send(transcript, unless_sent=True):
        if transcript.status == TranscriptStatus.SENT:
            return transcript
        raise TranscriptBeingSent(id=transcript.id)
    fetch = refetch or not transcript.body_text
    return _transcript_complete(transcript, _audiences_to_resend(transcript), fetch=fetch)


def _audiences_to_resend(transcript: Transcript) -> list[str]:
    """The audiences whose last message did not go out; staff again if all did."""
    latest: dict[str, str] = {}
    for email in transcript.emails.exclude(audience=EmailAudience.OVERRIDE):
        latest[email.audience] = email.status
    unsent = [audience for audience, status in latest.items() if status != TranscriptStatus.SENT]
    if unsent:
        return unsent
    if latest:
        return [EmailAudience.STAFF]
    return _audiences(visitor_copy=transcript.visitor_copy)


def transcript_resend_recipients(*, transcript: Transcript, to: list[str] | None = None) -> list[str]:
    """The addresses `transcript_resend` would mail now; nothing is sent or changed."""
    if to:
        return list(to)
    return _addresses(_audiences_to_resend(transcript), visitor_email=transcript.email)


def transcript_resend(
    *,
    transcript: Transcript,
    refetch: bool = False,
    to: list[str] | None = None,
    unless_sent: bool = False,
) -> Transcript:
    """Mail a recorded transcript again; every attempt is kept beside the earlier ones.

    `refetch` reads the thread again (from OpenAI, or the database when self-hosted) instead
    of using the stored text, which is also what happens when the first read never succeeded.
    `to` sends only to those addresses, e.g. to check what a mail looks like. `unless_sent`
    sends only if the transcript still has not reached staff once its send is claimed
    (TranscriptAlreadySent otherwise), for a queue read some time before.

    Nothing is sent while another send of the transcript runs (TranscriptBeingSent).
    """
    _require_settings("SES_TO_EMAIL")
    if refetch or not transcript.body_text:
        _require_settings(*_thread_source_settings())
    if not _transcript_claim_send(transcript, unless_sent=unless_sent):
        if unless_sent and transcript.status == TranscriptStatus.SENT:
            raise TranscriptAlreadySent(id=transcript.id)
        raise TranscriptBeingSent(id=transcript.id)
    if refetch or not transcript.body_text:
        _transcript_fetch_and_render(transcript)

    if to:
        # A check mail to a chosen address is recorded but is not a delivery to staff.
        error = _email_deliver(transcript, EmailAudience.OVERRIDE, override_to=to).error
        _transcript_release(transcript)
    else:
        transcript.recipients = _addresses(
            _audiences(visitor_copy=transcript.visitor_copy), visitor_email=transcript.email
        )
        transcript.save(update_fields=["recipients", "updated_at"])
        delivered = _transcript_deliver(transcript, _audiences_to_resend(transcript))
        error = "" if delivered else transcript.error
    if error:
        # Only operators and staff call this: the backend's own words help them most.
        raise EmailSendFailed(f"The email could not be sent again. {error}", id=transcript.id)
    return transcript


def transcripts_resend_queue(*, since: datetime | None = None) -> QuerySet[Transcript]:
    """Transcripts that never reached staff and that no live process is sending: failed ones,
    and those whose send was claimed by a process that died (TRANSCRIPT_PENDING_TIMEOUT_MINUTES
    ago or more), pending or failed.
    """
    queue = Transcript.objects.exclude(status=TranscriptStatus.SENT).filter(
        Q(sending_since__isnull=True) | Q(sending_since__lt=_abandoned_before(timezone.now()))
    )
    if since is not None:
        queue = queue.filter(created_at__gte=since)
    return queue.order_by("created_at", "id")


def transcripts_backlog() -> dict[str, int]:
    """What has not reached staff: `failed` transcripts (a resend may still fix them), and
    `stuck` ones, pending for longer than a send can take (its process died before it recorded
    an outcome). The template's alarms watch both (chatkit_site.cloudwatch_metrics)."""
    abandoned_before = _abandoned_before(timezone.now())
    unsent = Transcript.objects.exclude(status=TranscriptStatus.SENT)
    return {
        "failed": unsent.filter(status=TranscriptStatus.FAILED).count(),
        "stuck": unsent.filter(status=TranscriptStatus.PENDING, created_at__lt=abandoned_before).count(),
    }


# --- retention ---------------------------------------------------------------------

# Rows deleted per statement, so that a first purge of years of data neither holds one
# huge transaction nor sends an IN list longer than the database accepts.
PURGE_BATCH_SIZE = 500


def transcripts_past_retention(*, older_than_days: int) -> QuerySet[Transcript]:
    cutoff = timezone.now() - timedelta(days=older_than_days)
    return Transcript.objects.filter(created_at__lt=cutoff)


def transcripts_purge(*, older_than_days: int, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete transcripts created more than `older_than_days` ago, with every message and
    delivery report that belongs to them; returns how many transcripts were deleted.
    """
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1.")
    expired = transcripts_past_retention(older_than_days=older_than_days)
    deleted = 0
    while batch := list(expired.order_by("id").values_list("id", flat=True)[:batch_size]):
        # Only ids are loaded: deleting needs none of the stored mail bodies.
        _, per_model = Transcript.objects.filter(id__in=batch).only("id").delete()
        deleted += per_model.get(Transcript._meta.label, 0)
    return deleted


# A file uploaded for a message that was never sent is deleted this long after its upload:
# the widget sends a message within moments of the upload, or never.
UNSENT_UPLOAD_AGE = timedelta(days=1)


@dataclass(frozen=True)
class ThreadPurge:
    """What a purge of self-hosted threads deleted (or, in a dry run, would delete)."""

    threads: int = 0
    items: int = 0
    attachments: int = 0
    # Files uploaded for a message that was never sent, so in no thread.
    unsent_uploads: int = 0
    # Threads past the window kept because a transcript that has not reached staff refers to them.
    kept_for_transcripts: int = 0


def _threads_idle(*, older_than_days: int) -> QuerySet[ChatKitThread]:
    """Threads nobody wrote in for `older_than_days` days, and on which no answer is running."""
    now = timezone.now()
    return ChatKitThread.objects.filter(updated_at__lt=now - timedelta(days=older_than_days)).exclude(
        running_until__gt=now
    )


def _thread_ids_unsent_transcripts_need() -> QuerySet[Transcript, str]:
    # A transcript that has not reached staff may still have to read its thread: its first read
    # may have failed, and a send after a failure can read the thread again.
    return Transcript.objects.exclude(status=TranscriptStatus.SENT).values_list("thread_id", flat=True)


def threads_past_retention(*, older_than_days: int) -> QuerySet[ChatKitThread]:
    """Self-hosted threads to delete: idle for `older_than_days` days, no answer running on
    them, and no transcript that has not reached staff referring to them."""
    return _threads_idle(older_than_days=older_than_days).exclude(
        id__in=_thread_ids_unsent_transcripts_need()
    )


def _unsent_uploads() -> QuerySet[ChatKitAttachment]:
    return ChatKitAttachment.objects.filter(
        thread__isnull=True, created_at__lt=timezone.now() - UNSENT_UPLOAD_AGE
    )


def threads_purge_preview(*, older_than_days: int) -> ThreadPurge:
    """What `threads_purge` would delete now; nothing is changed."""
    expired = threads_past_retention(older_than_days=older_than_days)
    idle = _threads_idle(older_than_days=older_than_days).count()
    threads = expired.count()
    return ThreadPurge(
        threads=threads,
        items=ChatKitThreadItem.objects.filter(thread__in=expired).count(),
        attachments=ChatKitAttachment.objects.filter(thread__in=expired).count(),
        unsent_uploads=_unsent_uploads().count(),
        kept_for_transcripts=idle - threads,
    )


def threads_purge(*, older_than_days: int, batch_size: int = PURGE_BATCH_SIZE) -> ThreadPurge:
    """Delete the self-hosted threads past retention (see `threads_past_retention`) with their
    items, attachments and everything else that belongs to them, and the files uploaded more
    than a day ago for a message that was never sent.

    Rows are deleted through the ORM, a row at a time where a model asks to hear of it (an
    attachment's stored file goes with its row). Each batch is locked and checked again as it
    is deleted: a thread a visitor writes in meanwhile is skipped, never deleted under them.
    """
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1.")
    kept = (
        _threads_idle(older_than_days=older_than_days)
        .filter(id__in=_thread_ids_unsent_transcripts_need())
        .count()
    )
    threads = _delete_in_batches(threads_past_retention(older_than_days=older_than_days), batch_size)
    uploads = _delete_in_batches(_unsent_uploads(), batch_size)
    return ThreadPurge(
        threads=threads.get(ChatKitThread._meta.label, 0),
        items=threads.get(ChatKitThreadItem._meta.label, 0),
        attachments=threads.get(ChatKitAttachment._meta.label, 0),
        unsent_uploads=uploads.get(ChatKitAttachment._meta.label, 0),
        kept_for_transcripts=kept,
    )


def _delete_in_batches(expired: QuerySet[Any], batch_size: int) -> dict[str, int]:
    """Delete the rows of `expired` a batch at a time; how many rows of each model went.

    A batch is locked as it is read, and rows another transaction holds (a visitor's message
    being stored) are skipped: what is deleted is what still matched when it was locked.
    """
    deleted: dict[str, int] = {}
    while True:
        with transaction.atomic():
            batch = list(
                expired.order_by("pk")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:batch_size]
            )
            if not batch:
                return deleted
            _, per_model = expired.model.objects.filter(pk__in=batch).delete()
        for label, count in per_model.items():
            deleted[label] = deleted.get(label, 0) + count
