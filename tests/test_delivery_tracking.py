"""SES delivery, bounce and complaint notifications, through SNS over HTTPS and to Lambda.

The notifications are the SES developer guide's examples, signed as SNS signs them with a
key made here. Its certificate is handed to django-ses's certificate cache under an SNS
URL, as if django-ses had downloaded it: that download is the only step that would reach
AWS. Confirming a subscription is a GET of the SubscribeURL through urllib, answered here
by an opener installed with urllib's own `install_opener`.
"""

import io
import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import pytest
import time_machine
from django.db import OperationalError, connection
from django_ses import utils as django_ses_utils

from chatkit_api.models import (
    DeliveryReport,
    DeliveryState,
    EmailAudience,
    Transcript,
    TranscriptEmail,
    TranscriptStatus,
)
from chatkit_api.services import transcript_resend
from chatkit_site.lambda_handler import handler
from tests.conftest import STAFF, TOKEN
from tests.fake_chatkit import user_message
from tests.lambda_events import sns_event
from tests.sns_signing import (
    CERT_URL,
    REGION,
    TOPIC_ARN,
    SnsSigner,
    new_signer,
    notification,
    subscription_confirmation,
)

pytestmark = pytest.mark.django_db

WEBHOOK_URL = "/api/chatkit/ses-notifications"
EXAMPLES = Path(__file__).parent / "ses_notifications"
EXAMPLE_RECIPIENTS = ["jane@example.com", "mary@example.com", "richard@example.com"]


def example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def sns_key() -> SnsSigner:
    return new_signer()


@pytest.fixture(scope="session")
def attacker_key() -> SnsSigner:
    return new_signer()


@pytest.fixture
def sns(sns_key: SnsSigner, settings) -> Iterator[SnsSigner]:
    """SNS as this service sees it: a trusted topic and SNS's signing certificate."""
    settings.AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS = [TOPIC_ARN]
    django_ses_utils.clear_cert_cache()
    django_ses_utils._CERT_CACHE[CERT_URL] = sns_key.certificate
    yield sns_key
    django_ses_utils.clear_cert_cache()


class _SnsEndpoint(urllib.request.HTTPSHandler):
    """Answers HTTPS GETs as SNS answers a ConfirmSubscription link, and remembers them."""

    def __init__(self) -> None:
        super().__init__()
        self.requested: list[str] = []

    def https_open(self, req: urllib.request.Request) -> urllib.response.addinfourl:
        self.requested.append(req.full_url)
        body = (
            b'<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
            b"<ConfirmSubscriptionResult><SubscriptionArn>" + TOPIC_ARN.encode() + b":1</SubscriptionArn>"
            b"</ConfirmSubscriptionResult></ConfirmSubscriptionResponse>"
        )
        headers = Message()
        headers["Content-Type"] = "text/xml"
        response = urllib.response.addinfourl(io.BytesIO(body), headers, req.full_url, 200)
        response.msg = "OK"
        return response


@pytest.fixture
def sns_endpoint() -> Iterator[_SnsEndpoint]:
    endpoint = _SnsEndpoint()
    urllib.request.install_opener(urllib.request.build_opener(endpoint))
    yield endpoint
    urllib.request.install_opener(None)  # type: ignore[arg-type]


def post(client, message) -> object:
    # SNS posts JSON with Content-Type text/plain.
    return client.post(WEBHOOK_URL, json.dumps(message), content_type="text/plain; charset=UTF-8")


def sent_email(*, message_id: str, to: list[str], audience: str = EmailAudience.STAFF) -> TranscriptEmail:
    transcript = Transcript.objects.create(
        thread_id="cthr_example",
        requested_by="server",
        status=TranscriptStatus.SENT,
        recipients=to,
        subject="[Chat] Sam - quote",
        body_text="Mode: quote\n",
    )
    return TranscriptEmail.objects.create(
        transcript=transcript,
        audience=audience,
        to=to,
        status=TranscriptStatus.SENT,
        ses_message_id=message_id,
    )


def reports_of(email: TranscriptEmail) -> list[tuple]:
    return list(
        email.reports.order_by("recipient").values_list(
            "recipient", "state", "bounce_type", "bounce_subtype", "detail"
        )
    )


# --- the developer guide's examples over HTTPS -------------------------------------------

GUIDE_EXAMPLES = [
    (
        "bounce_with_dsn",
        EXAMPLE_RECIPIENTS,
        [
            (
                "jane@example.com",
                "bounced",
                "Permanent",
                "General",
                "smtp; 550 5.1.1 <jane@example.com>... User",
            )
        ],
        DeliveryState.BOUNCED,
    ),
    (
        "bounce_without_dsn",
        EXAMPLE_RECIPIENTS,
        [
            ("jane@example.com", "bounced", "Permanent", "General", ""),
            ("richard@example.com", "bounced", "Permanent", "General", ""),
        ],
        DeliveryState.BOUNCED,
    ),
    (
        "complaint_with_feedback_report",
        EXAMPLE_RECIPIENTS,
        [("richard@example.com", "complained", "", "", "abuse")],
        DeliveryState.COMPLAINED,
    ),
    (
        "complaint_without_feedback_report",
        EXAMPLE_RECIPIENTS,
        [("richard@example.com", "complained", "", "", "")],
        DeliveryState.COMPLAINED,
    ),
    (
        "delivery",
        ["jane@example.com"],
        [("jane@example.com", "delivered", "", "", "250 ok:  Message 64111812 accepted")],
        DeliveryState.DELIVERED,
    ),
]


@pytest.mark.parametrize(("name", "to", "expected_reports", "expected_state"), GUIDE_EXAMPLES)
@pytest.mark.parametrize("signature_version", ["1", "2"])
def test_guide_example_is_recorded_per_recipient(
    client, sns, name, to, expected_reports, expected_state, signature_version
):
    ses_notification = example(name)
    email = sent_email(message_id=ses_notification["mail"]["messageId"], to=to)
    message = sns.sign(notification(ses_notification), version=signature_version)

    response = post(client, message)

    assert response.status_code == 200
    assert reports_of(email) == expected_reports
    assert set(email.reports.values_list("sns_message_id", flat=True)) == {message["MessageId"]}
    assert email.reports.first().reported_at.isoformat() == "2016-01-27T14:59:38.237000+00:00"
    email.transcript.refresh_from_db()
    assert email.transcript.delivery_state == expected_state


def test_ses_event_publishing_body_is_recorded_too(client, sns):
    """Configuration-set event publishing names the kind `eventType` instead."""
    ses_event = example("bounce_with_dsn")
    ses_event["eventType"] = ses_event.pop("notificationType")
    email = sent_email(message_id=ses_event["mail"]["messageId"], to=EXAMPLE_RECIPIENTS)

    assert post(client, sns.sign(notification(ses_event))).status_code == 200

    assert [state for _, state, *_ in reports_of(email)] == ["bounced"]


def test_a_notification_delivered_twice_is_recorded_once(client, sns):
    ses_notification = example("bounce_without_dsn")
    email = sent_email(message_id=ses_notification["mail"]["messageId"], to=EXAMPLE_RECIPIENTS)
    message = sns.sign(notification(ses_notification))

    assert post(client, message).status_code == 200
    assert post(client, message).status_code == 200

    assert email.reports.count() == 2


def test_mail_this_service_did_not_send_is_ignored(client, sns):
    other = sent_email(message_id="0000014644fe5ef6-not-the-same-000000", to=["jane@example.com"])

    response = post(client, sns.sign(notification(example("delivery"))))

    assert response.status_code == 200
    assert DeliveryReport.objects.count() == 0
    other.transcript.refresh_from_db()
    assert other.transcript.delivery_state == DeliveryState.UNREPORTED


def test_other_event_kinds_are_ignored(client, sns):
    ses_event = {"eventType": "Open", "mail": example("delivery")["mail"], "open": {"ipAddress": "192.0.2.1"}}
    sent_email(message_id=ses_event["mail"]["messageId"], to=["jane@example.com"])

    assert post(client, sns.sign(notification(ses_event))).status_code == 200

    assert DeliveryReport.objects.count() == 0


def test_a_database_that_fails_is_a_json_503_so_that_sns_tries_again(client, sns, caplog):
    ses_notification, email = _bounce_for_sent_email()

    def database_gone(execute, sql, params, many, context):
        raise OperationalError("server closed the connection unexpectedly")

    with connection.execute_wrapper(database_gone):
        response = post(client, sns.sign(notification(ses_notification)))

    assert response.status_code == 503
    assert response.json() == {"error": "The database is unavailable right now. Try again later."}
    assert "server closed the connection unexpectedly" in caplog.text
    _assert_nothing_changed(email)


# --- end to end: a transcript mailed through SES (moto), then reported on ---------------


def test_reports_on_a_mailed_transcript_reach_the_transcript(client, sns, fake_chatkit, ses, settings, api):
    settings.ALLOW_USER_RECAP = True
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("a quote please")])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    api.post(
        "/api/chatkit/transcript",
        {"threadId": thread.id, "mode": "recap", "email": "zoe@visitor.example"},
        format="json",
    )
    staff_mail, visitor_mail = ses.sent()
    transcript = Transcript.objects.get()

    delivered = example("delivery")
    delivered["mail"]["messageId"] = staff_mail.message_id
    delivered["delivery"]["recipients"] = [STAFF]
    post(client, sns.sign(notification(delivered)))
    transcript.refresh_from_db()
    # The visitor's copy has no report yet.
    assert transcript.delivery_state == DeliveryState.UNREPORTED

    bounced = example("bounce_with_dsn")
    bounced["mail"]["messageId"] = visitor_mail.message_id
    bounced["bounce"]["bouncedRecipients"][0]["emailAddress"] = "zoe@visitor.example"
    post(client, sns.sign(notification(bounced)))

    transcript.refresh_from_db()
    assert transcript.delivery_state == DeliveryState.BOUNCED
    staff_email = transcript.emails.get(audience=EmailAudience.STAFF)
    visitor_email = transcript.emails.get(audience=EmailAudience.VISITOR)
    assert [(report.recipient, report.state) for report in staff_email.reports.all()] == [
        (STAFF, "delivered")
    ]
    [report] = visitor_email.reports.all()
    assert (report.recipient, report.state, report.bounce_type) == (
        "zoe@visitor.example",
        "bounced",
        "Permanent",
    )


def test_a_resend_starts_a_new_message_without_reports(client, sns, fake_chatkit, ses, api):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    api.post("/api/chatkit/transcript", {"threadId": thread.id}, format="json")
    [first] = ses.sent()
    bounced = example("bounce_with_dsn")
    bounced["mail"]["messageId"] = first.message_id
    bounced["bounce"]["bouncedRecipients"][0]["emailAddress"] = STAFF
    post(client, sns.sign(notification(bounced)))
    transcript = Transcript.objects.get()
    transcript.refresh_from_db()
    assert transcript.delivery_state == DeliveryState.BOUNCED

    transcript_resend(transcript=transcript)

    transcript.refresh_from_db()
    assert transcript.delivery_state == DeliveryState.UNREPORTED
    old, new = transcript.emails.all()
    assert old.reports.count() == 1
    assert new.reports.count() == 0


# --- forged and unwanted messages: rejected, nothing changes ------------------------------


def _bounce_for_sent_email() -> tuple[dict, TranscriptEmail]:
    ses_notification = example("bounce_with_dsn")
    return ses_notification, sent_email(
        message_id=ses_notification["mail"]["messageId"], to=EXAMPLE_RECIPIENTS
    )


def _assert_nothing_changed(email: TranscriptEmail) -> None:
    assert DeliveryReport.objects.count() == 0
    email.transcript.refresh_from_db()
    assert email.transcript.delivery_state == DeliveryState.UNREPORTED


def test_a_body_changed_after_signing_is_rejected(client, sns):
    ses_notification, email = _bounce_for_sent_email()
    message = sns.sign(notification(ses_notification))
    forged = json.loads(message["Message"])
    forged["bounce"]["bouncedRecipients"][0]["emailAddress"] = "mary@example.com"
    message["Message"] = json.dumps(forged)

    response = post(client, message)

    assert response.status_code == 400
    assert response.json() == {"error": "Signature verification failed."}
    _assert_nothing_changed(email)


@pytest.mark.parametrize(
    ("later", "accepted"), [(timedelta(minutes=59), True), (timedelta(minutes=61), False)]
)
def test_a_message_is_accepted_only_while_sns_could_still_be_retrying_it(client, sns, later, accepted):
    ses_notification, email = _bounce_for_sent_email()
    message = sns.sign(notification(ses_notification))

    # A replay of a genuine message, captured when it was sent.
    with time_machine.travel(datetime.now(UTC) + later):
        response = post(client, message)

    if accepted:
        assert response.status_code == 200
        assert DeliveryReport.objects.count() == 1
    else:
        assert response.status_code == 400
        assert response.json() == {
            "error": "The SNS message is older than SNS retries a delivery: not accepted again."
        }
        _assert_nothing_changed(email)


def test_a_message_without_a_timestamp_is_rejected(client, sns):
    ses_notification, email = _bounce_for_sent_email()
    message = notification(ses_notification)
    del message["Timestamp"]

    response = post(client, sns.sign(message))

    assert response.status_code == 400
    _assert_nothing_changed(email)


def test_a_message_signed_with_another_key_is_rejected(client, sns, attacker_key):
    ses_notification, email = _bounce_for_sent_email()
    # Names SNS's certificate, but is signed with a key SNS does not hold.
    forged = attacker_key.sign(notification(ses_notification))

    response = post(client, forged)

    assert response.status_code == 400
    _assert_nothing_changed(email)


def test_a_certificate_outside_sns_is_not_trusted(client, sns, attacker_key):
    ses_notification, email = _bounce_for_sent_email()
    for url in (
        "https://attacker.example/SimpleNotificationService-0123.pem",
        f"https://sns.{REGION}.amazonaws.com.attacker.example/SimpleNotificationService-0123.pem",
        f"http://sns.{REGION}.amazonaws.com/SimpleNotificationService-0123.pem",
    ):
        # Even with the attacker's certificate already in the cache, the URL is refused first.
        django_ses_utils._CERT_CACHE[url] = attacker_key.certificate
        forged = SnsSigner(key=attacker_key.key, certificate=attacker_key.certificate, cert_url=url).sign(
            notification(ses_notification)
        )

        assert post(client, forged).status_code == 400
    _assert_nothing_changed(email)


def test_a_message_from_another_topic_is_rejected(client, sns):
    ses_notification, email = _bounce_for_sent_email()
    other_topic = f"arn:aws:sns:{REGION}:999999999999:someone-elses-topic"

    response = post(client, sns.sign(notification(ses_notification, topic_arn=other_topic)))

    assert response.status_code == 400
    assert response.json() == {"error": "Untrusted topic."}
    _assert_nothing_changed(email)


@pytest.mark.parametrize(
    "tamper",
    [
        {"SignatureVersion": "3"},
        {"SignatureVersion": None},
        {"Signature": ""},
        {"Signature": "not base64!"},
    ],
    ids=["unknown-version", "no-version", "no-signature", "garbage-signature"],
)
def test_a_malformed_signature_is_rejected(client, sns, tamper):
    ses_notification, email = _bounce_for_sent_email()
    message = sns.sign(notification(ses_notification))
    message.update(tamper)
    message = {key: value for key, value in message.items() if value is not None}

    assert post(client, message).status_code == 400
    _assert_nothing_changed(email)


def test_a_sha1_signature_labelled_version_2_is_rejected(client, sns):
    ses_notification, email = _bounce_for_sent_email()
    message = {**sns.sign(notification(ses_notification), version="1"), "SignatureVersion": "2"}

    assert post(client, message).status_code == 400
    _assert_nothing_changed(email)


def test_without_trusted_topics_nothing_is_accepted(client, sns, settings):
    settings.AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS = []
    ses_notification, email = _bounce_for_sent_email()

    response = post(client, sns.sign(notification(ses_notification)))

    assert response.status_code == 503
    assert response.json() == {
        "error": "The service is not configured: SES_NOTIFICATION_TOPIC_ARNS is not set.",
        "missing": ["SES_NOTIFICATION_TOPIC_ARNS"],
    }
    _assert_nothing_changed(email)


def test_a_body_that_is_not_json_is_a_json_400(client, sns):
    response = client.post(WEBHOOK_URL, "{not json", content_type="text/plain")

    assert response.status_code == 400
    assert "error" in response.json()


@pytest.mark.parametrize("body", ["[]", '"Delivery"', "1", "null", "true", "[" * 1000 + "]" * 1000])
def test_a_body_that_is_not_an_object_is_a_json_400_that_changes_nothing(client, sns, caplog, body):
    _, email = _bounce_for_sent_email()

    response = client.post(WEBHOOK_URL, body, content_type="text/plain")

    assert response.status_code == 400
    assert response.json() == {"error": "The body is not an SNS message (a JSON object)."}
    _assert_nothing_changed(email)
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []


def test_only_post_is_allowed(client, sns):
    response = client.get(WEBHOOK_URL)

    assert response.status_code == 405
    assert response.json() == {"error": "Method not allowed."}


def test_a_failed_certificate_download_is_not_remembered(sns):
    """django-ses caches a failed download as None; the next message must try again."""
    from chatkit_api.sns import sns_signature_valid

    ses_notification, _ = _bounce_for_sent_email()
    django_ses_utils._CERT_CACHE[CERT_URL] = None

    assert sns_signature_valid(sns.sign(notification(ses_notification))) is False
    assert CERT_URL not in django_ses_utils._CERT_CACHE


# --- subscription confirmation ------------------------------------------------------------


def test_a_signed_subscription_confirmation_is_confirmed(client, sns, sns_endpoint):
    message = sns.sign(subscription_confirmation())

    response = post(client, message)

    assert response.status_code == 200
    assert sns_endpoint.requested == [message["SubscribeURL"]]


def test_a_forged_subscription_confirmation_is_not_confirmed(client, sns, sns_endpoint, attacker_key):
    response = post(client, attacker_key.sign(subscription_confirmation()))

    assert response.status_code == 400
    assert sns_endpoint.requested == []


def test_a_subscription_to_another_topic_is_not_confirmed(client, sns, sns_endpoint):
    other_topic = f"arn:aws:sns:{REGION}:999999999999:someone-elses-topic"

    response = post(client, sns.sign(subscription_confirmation(topic_arn=other_topic)))

    assert response.status_code == 400
    assert sns_endpoint.requested == []


def test_a_subscribe_url_outside_sns_is_not_visited(client, sns, sns_endpoint):
    message = subscription_confirmation()
    message["SubscribeURL"] = "https://attacker.example/?Action=ConfirmSubscription"

    assert post(client, sns.sign(message)).status_code == 200
    assert sns_endpoint.requested == []


# --- the same notifications as a Lambda SNS event -----------------------------------------


def test_lambda_sns_event_is_verified_and_recorded(sns):
    ses_notification, email = _bounce_for_sent_email()
    message = sns.sign(notification(ses_notification), version="2")
    event = sns_event(messages=[message])
    assert "SigningCertUrl" in event["Records"][0]["Sns"]
    assert event["Records"][0]["Sns"]["Subject"] is None

    result = handler(event, None)

    assert result == {"ok": True, "reports_recorded": 1, "records_rejected": 0, "records_ignored": 0}
    assert reports_of(email) == [
        ("jane@example.com", "bounced", "Permanent", "General", "smtp; 550 5.1.1 <jane@example.com>... User")
    ]


def test_lambda_record_with_a_subject_is_verified(sns):
    ses_notification = example("delivery")
    email = sent_email(message_id=ses_notification["mail"]["messageId"], to=["jane@example.com"])
    message = sns.sign(notification(ses_notification, subject="Amazon SES Email Event Notification"))

    assert handler(sns_event(messages=[message]), None)["reports_recorded"] == 1
    email.transcript.refresh_from_db()
    assert email.transcript.delivery_state == DeliveryState.DELIVERED


def test_forged_lambda_records_are_rejected_and_the_genuine_one_recorded(sns, attacker_key):
    genuine_notification = example("delivery")
    genuine_email = sent_email(message_id=genuine_notification["mail"]["messageId"], to=["jane@example.com"])
    forged_notification, forged_email = _bounce_for_sent_email()
    other_topic = f"arn:aws:sns:{REGION}:999999999999:someone-elses-topic"
    event = sns_event(
        messages=[
            attacker_key.sign(notification(forged_notification)),
            sns.sign(notification(forged_notification, topic_arn=other_topic)),
            sns.sign(notification(genuine_notification)),
        ]
    )

    result = handler(event, None)

    assert result == {"ok": False, "reports_recorded": 1, "records_rejected": 2, "records_ignored": 0}
    assert forged_email.reports.count() == 0
    assert genuine_email.reports.count() == 1
