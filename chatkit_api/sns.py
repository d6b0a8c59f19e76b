"""SNS messages carrying SES notifications: is this message really from our SNS topic?

The certificate download, its cache and the check that the certificate URL is an SNS host
are django-ses's. django-ses checks signatures with SHA1 only (SignatureVersion 1); topics
set to SignatureVersion 2 sign with SHA256, so the signature itself is checked here for
both versions.

A Lambda SNS record carries the same signed fields as the HTTPS form, under slightly
different names; `sns_message_from_lambda_record` turns it into the HTTPS form.
"""

import base64
import binascii
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django_ses import utils as django_ses_utils

logger = logging.getLogger(__name__)

_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

# SNS gives up retrying an HTTPS delivery within 3,600 seconds (a hard limit): an older
# message posted to the webhook is a replay. Clocks may differ by a few minutes.
HTTPS_MESSAGE_MAX_AGE = timedelta(hours=1)
_CLOCK_SKEW = timedelta(minutes=5)

# Lambda record field names -> the names SNS uses in an HTTPS POST body.
_LAMBDA_FIELD_NAMES = {"SigningCertUrl": "SigningCertURL", "UnsubscribeUrl": "UnsubscribeURL"}


class _Verifier(django_ses_utils.EventMessageVerifier):
    """django-ses's verifier, for its certificate handling and string to sign."""

    def string_to_sign(self) -> bytes | None:
        return self._get_bytes_to_sign()

    def trusted_certificate_url(self) -> str | None:
        return self._get_cert_url()


def sns_message_from_lambda_record(record: dict[str, Any]) -> dict[str, Any]:
    """The `Sns` part of a Lambda SNS record, with the field names of the HTTPS form."""
    sns = record.get("Sns")
    if not isinstance(sns, dict):
        return {}
    # A Lambda record says `"Subject": null` where the HTTPS form leaves the field out.
    message = {key: value for key, value in sns.items() if value is not None}
    for lambda_name, http_name in _LAMBDA_FIELD_NAMES.items():
        if lambda_name in message:
            message[http_name] = message.pop(lambda_name)
    return message


def sns_topic_trusted(message: Any) -> bool:
    """True when the message comes from a topic listed in SES_NOTIFICATION_TOPIC_ARNS.

    A valid signature only proves that some SNS topic sent the message: anyone can create
    a topic in their own account and subscribe this endpoint to it. No list, no trust.
    """
    return isinstance(message, dict) and message.get("TopicArn") in settings.AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS


def sns_https_message_recent(message: dict[str, Any]) -> bool:
    """True when the message's (signed) Timestamp is within the time SNS retries an HTTPS
    delivery. Not for Lambda records: SNS retries those for days."""
    try:
        sent = datetime.fromisoformat(str(message.get("Timestamp", "")))
    except ValueError:
        return False
    if sent.tzinfo is None:
        return False
    age = datetime.now(UTC) - sent
    return -_CLOCK_SKEW <= age <= HTTPS_MESSAGE_MAX_AGE


def sns_signature_valid(message: Any) -> bool:
    """True when SNS signed exactly these fields with the certificate the message names."""
    if not isinstance(message, dict):
        return False
    algorithm = _SIGNATURE_HASHES.get(str(message.get("SignatureVersion", "")))
    if algorithm is None:
        logger.warning("SNS message %s: unknown SignatureVersion", message.get("MessageId"))
        return False
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        return False

    verifier = _Verifier(message)
    string_to_sign = verifier.string_to_sign()
    if not signature or not string_to_sign:
        return False
    certificate = verifier.certificate
    if certificate is None:
        if verifier.trusted_certificate_url():
            # django-ses caches a failed download for the life of the process; forget it,
            # so that SNS's next retry of this message downloads the certificate again.
            django_ses_utils.clear_cert_cache()
        logger.warning("SNS message %s: no trusted signing certificate", message.get("MessageId"))
        return False
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        return False
    try:
        public_key.verify(signature, string_to_sign, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        logger.warning("SNS message %s: invalid signature", message.get("MessageId"))
        return False
    return True
