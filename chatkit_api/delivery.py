"""What SES reports about the mail it sent: deliveries, bounces and complaints, per recipient.

Notifications arrive through SNS, over HTTPS (chatkit_api.ses_webhook) or as Lambda SNS
events (chatkit_site.lambda_handler). This module and what it imports (django-ses, boto3)
stay off the path of the session and transcript calls.
"""

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chatkit_api import sns
from chatkit_api.models import (
    DeliveryReport,
    DeliveryState,
    EmailAudience,
    Transcript,
    TranscriptEmail,
    TranscriptStatus,
    char_limit,
)

logger = logging.getLogger(__name__)


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
            name: str(getattr(self, name))[: char_limit(DeliveryReport, name)]
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
