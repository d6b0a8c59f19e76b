"""Keeping secrets out of logs and stored error texts.

An upstream error body, a backend's exception or a debug log of a request can quote a
credential. Whatever such text says, the values of the service's secrets are replaced
before it is written anywhere an operator or a member of staff reads.
"""

import logging
import os

from django.conf import settings

REDACTED = "[redacted]"
# Shorter values would redact ordinary words; every real credential is longer.
_MIN_SECRET_LENGTH = 8


def _secret_values() -> list[str]:
    values = [
        getattr(settings, "OPENAI_API_KEY", ""),
        getattr(settings, "TRANSCRIPT_API_TOKEN", ""),
        getattr(settings, "SECRET_KEY", ""),
        *getattr(settings, "SECRET_KEY_FALLBACKS", []),
        getattr(settings, "CLOUDFRONT_ORIGIN_SECRET", ""),
        str(getattr(settings, "DATABASES", {}).get("default", {}).get("PASSWORD") or ""),
        # The Lambda runtime puts the function role's credentials in the environment.
        os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        os.environ.get("AWS_SESSION_TOKEN", ""),
    ]
    # Longest first, so that a secret containing another is replaced whole.
    return sorted({value for value in values if len(value) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)


def secrets_redact(text: str) -> str:
    for value in _secret_values():
        text = text.replace(value, REDACTED)
    return text


class RedactSecretsFilter(logging.Filter):
    """Attached to every log handler: the record's message and traceback, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not settings.configured:
            return True
        message = record.getMessage()
        redacted = secrets_redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = secrets_redact(record.exc_text)
        if record.stack_info:
            record.stack_info = secrets_redact(record.stack_info)
        return True
