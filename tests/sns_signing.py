"""SNS messages signed the way SNS signs them, with a key and certificate made for the tests.

SNS signs a canonical string of some of the message's fields ("Name\\nvalue\\n" for each,
in a fixed order, skipping absent ones) with RSA PKCS#1 v1.5: SHA1 for SignatureVersion 1,
SHA256 for SignatureVersion 2. The string is built here independently of the code under
test, from the SNS developer guide ("Verifying the signatures of Amazon SNS messages").
"""

import base64
import datetime
import json
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

REGION = "eu-west-1"
TOPIC_ARN = f"arn:aws:sns:{REGION}:123456789012:ses-notifications"
# Shaped like the URLs SNS puts in SigningCertURL; the certificate is never downloaded.
CERT_URL = (
    f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
)

# Both kinds of confirmation sign the same fields.
_CONFIRMATION_FIELDS = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
_SIGNED_FIELDS = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


def string_to_sign(message: dict[str, Any]) -> bytes:
    fields = _SIGNED_FIELDS[message["Type"]]
    return "".join(f"{name}\n{message[name]}\n" for name in fields if message.get(name)).encode()


@dataclass(frozen=True)
class SnsSigner:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    cert_url: str = CERT_URL

    def sign(self, message: dict[str, Any], *, version: str = "1") -> dict[str, Any]:
        """The message with SignatureVersion, Signature and SigningCertURL set."""
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), _HASHES[version]())
        return {
            **message,
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": self.cert_url,
        }


def new_signer(*, common_name: str = "sns.amazonaws.com", cert_url: str = CERT_URL) -> SnsSigner:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return SnsSigner(key=key, certificate=certificate, cert_url=cert_url)


def _timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def notification(
    ses_notification: dict[str, Any], *, topic_arn: str = TOPIC_ARN, subject: str | None = None
) -> dict[str, Any]:
    """An unsigned SNS Notification (HTTPS form) whose Message is the SES notification."""
    message_id = str(uuid.uuid4())
    message: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic_arn,
        "Message": json.dumps(ses_notification),
        "Timestamp": _timestamp(),
        "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic_arn}:{message_id}",
    }
    if subject is not None:
        message["Subject"] = subject
    return message


def subscription_confirmation(
    *,
    topic_arn: str = TOPIC_ARN,
    token: str = "2336412f37fb687f5d51e6e2425c464de",
) -> dict[str, Any]:
    """An unsigned SNS SubscriptionConfirmation (HTTPS form)."""
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": token,
        "TopicArn": topic_arn,
        "Message": f"You have chosen to subscribe to the topic {topic_arn}.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic_arn}&Token={token}",
        "Timestamp": _timestamp(),
    }
