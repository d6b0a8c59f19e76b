"""Sending mail through Django's email API; in production the backend is django-ses.

SES gets timeouts and one retry that fit in a request's time budget (chatkit_api.time_budget),
and a message is only handed to it while there is time for every attempt: otherwise it is
not sent, and the transcript records why, to be resent.
"""

import functools
import logging
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend

from chatkit_api.redaction import secrets_redact
from chatkit_api.time_budget import time_left

logger = logging.getLogger(__name__)

# Control characters other than tab, and Unicode line separators: in a mail header any of
# them could start a new header (CR, LF), cut it short (NUL), or read as a line break to
# some mail client or parser.
_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# An RFC 2047 encoded word: plain ASCII on its own, but mail clients decode it, so that
# `=?utf-8?q?x=0D=0ABcc:_...?=` shows, and is copied on, as two lines.
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bq]\?[^?]*\?=", re.IGNORECASE)


def header_safe(value: str) -> bool:
    return not _HEADER_UNSAFE.search(value) and not _ENCODED_WORD.search(value)


@dataclass(frozen=True)
class OutgoingEmail:
    subject: str
    text: str
    html: str
    to: list[str]
    reply_to: str


class MailError(Exception):
    """The backend refused the message or could not be reached."""


SES_BACKEND = "django_ses.SESBackend"
# Attempts to hand a message to SES: a throttled or failed one is tried once more.
SES_ATTEMPTS = 2
# The longest botocore waits before that retry (its standard mode: a random part of 1 s for a
# throttled send, of 50 ms for other errors).
SES_RETRY_WAIT_SECONDS = 1.0


def _ses_attempt_seconds() -> float:
    """How long one attempt may take to connect to SES, and again to be answered: a tenth of
    REQUEST_TIME_BUDGET_SECONDS (botocore's defaults are a minute each)."""
    return settings.REQUEST_TIME_BUDGET_SECONDS / 10


def _ses_send_seconds() -> float:
    """The longest handing one message to SES can take, its retry included."""
    return SES_ATTEMPTS * 2 * _ses_attempt_seconds() + SES_RETRY_WAIT_SECONDS


def _backend_options(backend: str) -> dict[str, Any]:
    if backend != SES_BACKEND:
        return {}
    # Imported with django-ses, only where mail goes to SES.
    from botocore.config import Config

    return {
        "aws_config": Config(
            connect_timeout=_ses_attempt_seconds(),
            read_timeout=_ses_attempt_seconds(),
            retries={"mode": "standard", "total_max_attempts": SES_ATTEMPTS},
        )
    }


@functools.lru_cache(maxsize=1)
def _open_connection(backend: str) -> BaseEmailBackend:
    """One open mail connection per process, shared by every send.

    A connection made per message (Django's default) costs django-ses a new boto3 session
    and SES client each time, which loads the service model again: tens of milliseconds
    and megabytes per mail on a warm Lambda instance.
    """
    connection = get_connection(backend, **_backend_options(backend))
    connection.open()
    return connection


def email_send(email: OutgoingEmail) -> str:
    """Send one message and return the provider's message id ("" for local backends).

    Input is checked where it enters, but a stored transcript can be resent long after; no
    header value that could add a header or a recipient ever reaches the backend.
    """
    if not all(header_safe(value) for value in [email.subject, email.reply_to, *email.to]):
        raise MailError(
            "A subject, recipient or Reply-To contains a line break, control character or encoded "
            "word; not sent."
        )
    left = time_left()
    if settings.EMAIL_BACKEND == SES_BACKEND and left is not None and left < _ses_send_seconds():
        raise MailError(
            f"Not sent: {left:.1f} s were left of the request's time (REQUEST_TIME_BUDGET_SECONDS), "
            f"and handing the mail to SES may take {_ses_send_seconds():.1f} s."
        )
    message = EmailMultiAlternatives(
        connection=_open_connection(settings.EMAIL_BACKEND),
        subject=email.subject,
        body=email.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=email.to,
        reply_to=[email.reply_to] if email.reply_to else None,
    )
    message.attach_alternative(email.html, "text/html")
    try:
        message.send()
    # Backends raise anything from botocore errors to socket errors; each one means the
    # message did not go out, and the caller records it for a resend.
    except Exception as exc:
        logger.exception("Sending the transcript email to %d recipient(s) failed", len(email.to))
        # Kept on the transcript and shown in the admin: whatever the backend quoted, no secret.
        raise MailError(secrets_redact(f"{type(exc).__name__}: {exc}")) from exc
    # django-ses leaves SES's MessageId here once the message is accepted.
    return str(message.extra_headers.get("message_id", ""))
