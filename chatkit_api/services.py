"""Business actions: create a ChatKit session, send a transcript, resend one, purge old
ones, record what SES reports about the mail.

Each service owns the order of its side effects. A transcript is recorded before anything
is mailed, and every failure after that point leaves the row `failed` with its error, so
nothing a visitor typed is lost when OpenAI or SES is down.
"""

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.dateparse import parse_datetime

from chatkit_api import openai_gateway, sns
from chatkit_api.exceptions import (
    EmailSendFailed,
    NotConfigured,
    ServiceError,
    ThreadNotFound,
)
from chatkit_api.mail import MailError, OutgoingEmail, email_send
from chatkit_api.models import (
    DeliveryReport,
    DeliveryState,
    EmailAudience,
    Transcript,
    TranscriptEmail,
    TranscriptStatus,
)
from chatkit_api.rendering import Lead, transcript_render

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """Who is calling the transcript endpoint: a visitor's browser or a trusted server."""

    visitor_id: str | None = None

    # DRF's IsAuthenticated reads this: a Caller only exists once authentication passed.
    is_authenticated = True

    @property
    def kind(self) -> str:
        return "server" if self.visitor_id is None else "visitor"


# What each endpoint cannot work without; a missing one is a 503 that names it.
SESSION_SETTINGS = ("OPENAI_API_KEY", "CHATKIT_WORKFLOW_ID")
TRANSCRIPT_SETTINGS = ("OPENAI_API_KEY", "SES_TO_EMAIL")


def settings_missing(*, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not getattr(settings, name)]


def _require_settings(*names: str) -> None:
    missing = settings_missing(names=names)
    if missing:
        raise NotConfigured(missing)


def chatkit_session_create(*, visitor_id: str, locale: str, page_url: str) -> openai_gateway.ChatKitSession:
    _require_settings(*SESSION_SETTINGS)
    return openai_gateway.session_create(
        user=visitor_id,
        workflow_id=settings.CHATKIT_WORKFLOW_ID,
        workflow_version=settings.CHATKIT_WORKFLOW_VERSION,
        state_variables={"locale": locale or "en", "page_url": page_url or ""},
    )


def _lead_of(transcript: Transcript) -> Lead:
    return Lead(
        name=transcript.name,
        email=transcript.email,
        phone=transcript.phone,
        vehicle=transcript.vehicle,
        details=transcript.details,
        mode=transcript.mode,
        page_url=transcript.page_url,
    )


def _wants_visitor_copy(lead: Lead) -> bool:
    return settings.ALLOW_USER_RECAP and lead.mode == "recap" and bool(lead.email)


def _recipients(*, visitor_email: str, visitor_copy: bool) -> list[str]:
    staff = list(settings.SES_TO_EMAIL)
    return [*staff, visitor_email] if visitor_copy else staff


def _transcript_fetch_and_render(transcript: Transcript) -> None:
    """Fetch the whole thread from OpenAI and store the rendered mail on the row."""
    items = openai_gateway.thread_items(transcript.thread_id)
    rendered = transcript_render(lead=_lead_of(transcript), items=items)
    transcript.subject = rendered.subject
    transcript.body_text = rendered.text
    transcript.body_html = rendered.html
    transcript.item_count = rendered.item_count
    transcript.save(update_fields=["subject", "body_text", "body_html", "item_count", "updated_at"])


def _transcript_record_failure(transcript: Transcript, error: str) -> None:
    # A transcript that reached staff once stays `sent`: a failed extra attempt must not
    # put it back in the queue that `resend_transcript --failed` works through.
    if transcript.status != TranscriptStatus.SENT:
        transcript.status = TranscriptStatus.FAILED
    transcript.error = error
    transcript.attempts += 1
    transcript.save(update_fields=["status", "error", "attempts", "delivery_state", "updated_at"])


def _audience_addresses(transcript: Transcript, audience: str) -> list[str]:
    if audience == EmailAudience.STAFF:
        return list(settings.SES_TO_EMAIL)
    return [transcript.email]


def _outgoing(transcript: Transcript, audience: str, override_to: list[str]) -> OutgoingEmail:
    if audience == EmailAudience.VISITOR:
        # The visitor's copy must not answer back to the visitor themselves.
        reply_to = settings.SES_REPLY_TO
    else:
        reply_to = transcript.email or settings.SES_REPLY_TO
    to = override_to if audience == EmailAudience.OVERRIDE else _audience_addresses(transcript, audience)
    return OutgoingEmail(
        subject=transcript.subject,
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
    transcript.save(update_fields=["status", "error", "attempts", "sent_at", "delivery_state", "updated_at"])
    return True


def transcript_send(*, caller: Caller, thread_id: str, lead: Lead) -> Transcript:
    """Record the transcript of a thread with the lead details, then mail it.

    A visitor may only mail a thread they own; someone else's thread is reported as not
    found so that its existence is not revealed. Nothing is recorded or fetched beyond the
    owner lookup until that check passes.
    """
    _require_settings(*TRANSCRIPT_SETTINGS)
    owner = openai_gateway.thread_owner(thread_id)
    if caller.visitor_id is not None and not constant_time_compare(owner, caller.visitor_id):
        raise ThreadNotFound()

    visitor_copy = _wants_visitor_copy(lead)
    transcript = Transcript.objects.create(
        thread_id=thread_id,
        visitor_id=owner,
        requested_by=caller.kind,
        name=lead.name,
        email=lead.email,
        phone=lead.phone,
        vehicle=lead.vehicle,
        details=lead.details,
        mode=lead.mode,
        page_url=lead.page_url,
        visitor_copy=visitor_copy,
        recipients=_recipients(visitor_email=lead.email, visitor_copy=visitor_copy),
    )
    try:
        _transcript_fetch_and_render(transcript)
    except ServiceError as exc:
        _transcript_record_failure(transcript, exc.message)
        raise

    audiences = [EmailAudience.STAFF] + ([EmailAudience.VISITOR] if visitor_copy else [])
    if not _transcript_deliver(transcript, audiences):
        raise EmailSendFailed(
            "The transcript was recorded but the email could not be sent. It is kept and can be resent.",
            id=transcript.id,
        )
    return transcript


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
    return [EmailAudience.STAFF] + ([EmailAudience.VISITOR] if transcript.visitor_copy else [])


def transcript_resend_recipients(*, transcript: Transcript, to: list[str] | None = None) -> list[str]:
    """The addresses `transcript_resend` would mail now; nothing is sent or changed."""
    if to:
        return list(to)
    return [
        address
        for audience in _audiences_to_resend(transcript)
        for address in _audience_addresses(transcript, audience)
    ]


def transcript_resend(
    *, transcript: Transcript, refetch: bool = False, to: list[str] | None = None
) -> Transcript:
    """Mail a recorded transcript again; every attempt is kept beside the earlier ones.

    `refetch` reads the thread from OpenAI again instead of using the stored text (which is
    also what happens when the first fetch never succeeded). `to` sends only to those
    addresses, e.g. to check what a mail looks like.
    """
    _require_settings("SES_TO_EMAIL")
    if refetch or not transcript.body_text:
        _require_settings("OPENAI_API_KEY")
        try:
            _transcript_fetch_and_render(transcript)
        except ServiceError as exc:
            _transcript_record_failure(transcript, exc.message)
            raise

    if to:
        # A check mail to a chosen address is recorded but is not a delivery to staff.
        error = _email_deliver(transcript, EmailAudience.OVERRIDE, override_to=to).error
    else:
        transcript.recipients = _recipients(
            visitor_email=transcript.email, visitor_copy=transcript.visitor_copy
        )
        transcript.save(update_fields=["recipients", "updated_at"])
        delivered = _transcript_deliver(transcript, _audiences_to_resend(transcript))
        error = "" if delivered else transcript.error
    if error:
        # Only operators and staff call this: the backend's own words help them most.
        raise EmailSendFailed(f"The email could not be sent again. {error}", id=transcript.id)
    return transcript


def transcripts_resend_queue(*, since: datetime | None = None) -> QuerySet[Transcript]:
    """Transcripts that never reached staff: failed ones, and pending ones whose sending
    process is gone (still pending TRANSCRIPT_PENDING_TIMEOUT_MINUTES after their last change).
    """
    stuck_before = timezone.now() - timedelta(minutes=settings.TRANSCRIPT_PENDING_TIMEOUT_MINUTES)
    queue = Transcript.objects.filter(
        Q(status=TranscriptStatus.FAILED) | Q(status=TranscriptStatus.PENDING, updated_at__lt=stuck_before)
    )
    if since is not None:
        queue = queue.filter(created_at__gte=since)
    return queue.order_by("created_at", "id")


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


# --- SES delivery reports ----------------------------------------------------------


@dataclass(frozen=True)
class _Report:
    recipient: str
    state: str
    bounce_type: str = ""
    bounce_subtype: str = ""
    detail: str = ""

    def fields(self) -> dict[str, str]:
        """The report's free-text fields, cut to the lengths of their columns."""
        return {
            name: str(getattr(self, name))[: DeliveryReport._meta.get_field(name).max_length]
            for name in ("recipient", "state", "bounce_type", "bounce_subtype", "detail")
        }


def _address(value: str) -> str:
    return parseaddr(value)[1].lower()


def _reports_in(notification: dict[str, Any]) -> list[_Report]:
    """The per-recipient reports in an SES notification (or SES event) body."""
    kind = notification.get("notificationType") or notification.get("eventType")
    if kind == "Delivery":
        delivery = notification.get("delivery") or {}
        return [
            _Report(str(recipient), DeliveryState.DELIVERED, detail=str(delivery.get("smtpResponse", "")))
            for recipient in delivery.get("recipients") or []
        ]
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        return [
            _Report(
                str(recipient.get("emailAddress", "")),
                DeliveryState.BOUNCED,
                bounce_type=str(bounce.get("bounceType", "")),
                bounce_subtype=str(bounce.get("bounceSubType", "")),
                detail=str(recipient.get("diagnosticCode") or recipient.get("status") or ""),
            )
            for recipient in bounce.get("bouncedRecipients") or []
        ]
    if kind == "Complaint":
        complaint = notification.get("complaint") or {}
        return [
            _Report(
                str(recipient.get("emailAddress", "")),
                DeliveryState.COMPLAINED,
                detail=str(complaint.get("complaintFeedbackType", "")),
            )
            for recipient in complaint.get("complainedRecipients") or []
        ]
    return []


def _report_time(notification: dict[str, Any]) -> datetime:
    kind = str(notification.get("notificationType") or notification.get("eventType") or "").lower()
    raw = (notification.get(kind) or {}).get("timestamp") or (notification.get("mail") or {}).get("timestamp")
    parsed = parse_datetime(str(raw)) if raw else None
    return parsed or timezone.now()


def _transcript_delivery_state(transcript: Transcript) -> str:
    """The summary staff filter on, from the latest sent message to each audience: any
    complaint, else any bounce, else delivered once every recipient's delivery is reported.
    """
    latest: dict[str, TranscriptEmail] = {}
    sent = transcript.emails.filter(status=TranscriptStatus.SENT).exclude(audience=EmailAudience.OVERRIDE)
    for email in sent.order_by("created_at", "id").prefetch_related("reports"):
        latest[email.audience] = email
    states: set[str] = set()
    everyone_reported = bool(latest)
    for email in latest.values():
        reports = list(email.reports.all())
        states.update(report.state for report in reports)
        reported = {_address(report.recipient) for report in reports}
        everyone_reported &= all(_address(address) in reported for address in email.to)
    for state in (DeliveryState.COMPLAINED, DeliveryState.BOUNCED):
        if state in states:
            return state
    return DeliveryState.DELIVERED if everyone_reported else DeliveryState.UNREPORTED


def ses_notification_record(*, notification: dict[str, Any], sns_message_id: str) -> int:
    """Record an SES delivery, bounce or complaint notification against the message SES sent.

    The message is found by the SES message id that sending returned; notifications about
    mail this service did not send, and other kinds (opens, clicks), are ignored. Returns
    how many new per-recipient reports were recorded (0 for a notification seen before).
    """
    reports = _reports_in(notification)
    message_id = str((notification.get("mail") or {}).get("messageId") or "")
    if not reports or not message_id:
        return 0
    email = TranscriptEmail.objects.filter(ses_message_id=message_id).first()
    if email is None:
        logger.info("SES notification for message %s, which is not a transcript mail", message_id)
        return 0
    reported_at = _report_time(notification)
    with transaction.atomic():
        # Notifications for one transcript's messages may arrive at once; the summary is
        # computed from all reports, so one at a time.
        transcript = Transcript.objects.select_for_update().get(pk=email.transcript_id)
        seen = set(email.reports.filter(sns_message_id=sns_message_id).values_list("recipient", flat=True))
        new = [
            DeliveryReport(email=email, reported_at=reported_at, sns_message_id=sns_message_id, **fields)
            for fields in (report.fields() for report in reports)
            if fields["recipient"] not in seen
        ]
        DeliveryReport.objects.bulk_create(new, ignore_conflicts=True)
        transcript.delivery_state = _transcript_delivery_state(transcript)
        # Not `updated_at`: it tells how long a pending transcript has been left alone.
        transcript.save(update_fields=["delivery_state"])
    return len(new)


def sns_lambda_event_handle(*, event: dict[str, Any]) -> dict[str, Any]:
    """Record the SES notifications in a Lambda SNS event.

    Every record is verified like an HTTPS notification (signature and topic), although
    only principals that IAM allows can invoke the function: anyone in the account with
    lambda:InvokeFunction, or a test event from the console, could otherwise write reports.
    A record that fails is logged and skipped, never retried: its answer would not change.
    """
    counts = {"reports_recorded": 0, "records_rejected": 0, "records_ignored": 0}
    for record in event.get("Records") or []:
        message = sns.sns_message_from_lambda_record(record)
        if not (sns.sns_topic_trusted(message) and sns.sns_signature_valid(message)):
            logger.warning(
                "Rejected SNS record %s from topic %s", message.get("MessageId"), message.get("TopicArn")
            )
            counts["records_rejected"] += 1
            continue
        try:
            notification = json.loads(message.get("Message", ""))
        except ValueError:
            notification = None
        if message.get("Type") != "Notification" or not isinstance(notification, dict):
            counts["records_ignored"] += 1
            continue
        counts["reports_recorded"] += ses_notification_record(
            notification=notification, sns_message_id=str(message.get("MessageId", ""))
        )
    return {"ok": counts["records_rejected"] == 0, **counts}
