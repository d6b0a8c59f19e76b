import email
import email.policy
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import boto3
import pytest
import time_machine
from botocore.config import Config
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import clear_script_prefix
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer
from moto.ses.models import ses_backends
from rest_framework.test import APIClient
from selenium.webdriver.remote.webdriver import WebDriver

from chatkit_api import mail, openai_gateway
from chatkit_site import aws_secrets
from tests.browser import chromium
from tests.chatkit_agents import MODEL
from tests.fake_chatkit import API_KEY, FakeChatKit
from tests.fake_model import ScriptedModel
from tests.fake_responses import FakeResponses
from tests.loopback import served_on_loopback
from tests.mail_backends import TROUBLE, SendTrouble

SES_REGION = "eu-west-1"
SENDER = "Chat Bot <chat@shop.example>"
STAFF = "leads@shop.example"
TOKEN = "transcript-token-for-tests-0123456789"


@pytest.fixture(autouse=True)
def _keep_the_test_database_connection() -> Iterator[None]:
    """Requests run through the real WSGI handler (as the Lambda handler does) would close
    the connection that holds the test's transaction when they start and finish. Django's
    test client detaches the same signal handlers around its own requests."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _script_prefix_of_the_root() -> Iterator[None]:
    """A request through the real WSGI handler (a Lambda event with a stage) sets the thread's
    script prefix; Django's test client keeps whatever it finds, so the next test would build
    its URLs under /prod/."""
    yield
    clear_script_prefix()


@pytest.fixture(scope="session")
def chatkit_server() -> Iterator[FakeChatKit]:
    server = FakeChatKit()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_chatkit(chatkit_server: FakeChatKit, settings) -> FakeChatKit:
    """The fake ChatKit API, empty, with the service configured to reach it."""
    chatkit_server.reset()
    settings.OPENAI_API_KEY = API_KEY
    settings.OPENAI_BASE_URL = chatkit_server.base_url
    settings.OPENAI_MAX_RETRIES = 0
    settings.OPENAI_TIMEOUT_SECONDS = 5
    settings.CHATKIT_WORKFLOW_ID = "wf_test_workflow"
    settings.CHATKIT_WORKFLOW_VERSION = ""
    settings.SES_TO_EMAIL = [STAFF]
    settings.SES_REPLY_TO = "hello@shop.example"
    settings.DEFAULT_FROM_EMAIL = SENDER
    settings.TRANSCRIPT_API_TOKEN = TOKEN
    settings.ALLOW_USER_RECAP = False
    return chatkit_server


# A day when managed ChatKit still answers: its failures are OpenAI's, not Agent Builder's
# shutdown (see openai_gateway.AGENT_BUILDER_SHUTDOWN).
BEFORE_SHUTDOWN = datetime(2026, 11, 27, 12, tzinfo=UTC)


@pytest.fixture
def before_agent_builder_shutdown() -> Iterator[None]:
    with time_machine.travel(BEFORE_SHUTDOWN, tick=True):
        yield


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    """Clients the service keeps per process are built from settings that tests change."""
    yield
    openai_gateway._build_client.cache_clear()
    mail._open_connection.cache_clear()


@dataclass
class SentMail:
    source: str
    destinations: list[str]
    message: EmailMessage
    message_id: str

    def _part(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        assert part is not None, f"no text/{subtype} part"
        # MIME on the wire uses CRLF line ends; compare with what the service rendered.
        return part.get_content().replace("\r\n", "\n")

    @property
    def text(self) -> str:
        return self._part("plain")

    @property
    def html(self) -> str:
        return self._part("html")


class MotoSes:
    """SES as moto runs it; `sent()` is what moto received, parsed from the raw MIME.

    moto adds the addresses of the To/Cc/Bcc headers to the envelope's destinations, so
    `destinations` is everyone the message would reach, whichever way they were named.
    """

    def __init__(self, region: str) -> None:
        self.region = region
        self.client = boto3.client("ses", region_name=region)

    def sent(self) -> list[SentMail]:
        backend = ses_backends[DEFAULT_ACCOUNT_ID][self.region]
        return [
            SentMail(
                source=raw.source,
                destinations=list(dict.fromkeys(raw.destinations)),
                # Parsed as the bytes a mail client receives: a str with 8-bit UTF-8 parts
                # would be misread by the email package.
                message=email.message_from_bytes(  # type: ignore[arg-type]
                    raw.raw_data.encode("utf-8"), policy=email.policy.default
                ),
                message_id=raw.id,
            )
            for raw in backend.sent_messages
        ]


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", SES_REGION)


@pytest.fixture
def secrets_manager(aws_credentials: None) -> Iterator[Any]:
    """Secrets Manager in this process (moto), for what the running service reads."""
    aws_secrets.forget()
    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        yield boto3.client("secretsmanager")
    aws_secrets.forget()


@pytest.fixture
def ses(aws_credentials: None, settings) -> Iterator[MotoSes]:
    """Mail goes through django-ses into moto, with the sender verified."""
    # The default session boto3 keeps is left as it is: resetting it makes every test load
    # botocore's service data again, a tenth of a second each.
    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        settings.EMAIL_BACKEND = "django_ses.SESBackend"
        settings.AWS_SES_REGION_NAME = SES_REGION
        moto_ses = MotoSes(SES_REGION)
        moto_ses.client.verify_email_identity(EmailAddress="chat@shop.example")
        yield moto_ses


@pytest.fixture
def send_trouble(ses: MotoSes, settings) -> Iterator[SendTrouble]:
    """Mail through django-ses into moto, where a test can hold the next send or kill its process."""
    settings.EMAIL_BACKEND = "tests.mail_backends.TroubledSESBackend"
    yield TROUBLE
    for hold in TROUBLE.holds:
        hold.release.set()
    TROUBLE.holds.clear()
    TROUBLE.kill_next = False


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def self_hosted(fake_chatkit: FakeChatKit, settings) -> Iterator[ScriptedModel]:
    """Self-hosted mode answered by the scripted test agent; its model is what the test gets."""
    settings.CHATKIT_MODE = "self_hosted"
    settings.CHATKIT_AGENT = "tests.chatkit_agents:scripted_agent"
    settings.CHATKIT_STREAM_RESPONSES = True
    settings.CHATKIT_AGENT_TRACING = False
    MODEL.reset()
    yield MODEL
    MODEL.reset()


@pytest.fixture
def fake_responses(settings) -> Iterator[FakeResponses]:
    """Self-hosted mode with the default agent, whose model calls a fake Responses API over HTTP
    through the real `openai` client."""
    fake = FakeResponses()
    with served_on_loopback(fake) as port:
        settings.CHATKIT_MODE = "self_hosted"
        settings.CHATKIT_AGENT = "chatkit_api.agent:default_agent"
        settings.CHATKIT_AGENT_MODEL = "gpt-4.1-mini"
        settings.CHATKIT_STREAM_RESPONSES = True
        settings.CHATKIT_AGENT_TRACING = False
        settings.OPENAI_API_KEY = API_KEY
        settings.OPENAI_BASE_URL = f"http://127.0.0.1:{port}/v1"
        settings.OPENAI_MAX_RETRIES = 0
        yield fake


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium (see tests/browser.py); mark the test `needs_chromium`."""
    driver = chromium()
    yield driver
    driver.quit()


# Attachments in S3 (tests/test_attachments.py, tests/test_pages_browser.py).
S3_REGION = "eu-west-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's S3 as a server on loopback, which boto3 and browsers reach over HTTP."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(moto_server: str, aws_credentials: None, settings, request) -> Iterator[str]:
    """Attachments in an S3 bucket (moto's server, reached over HTTP), uploaded straight to it."""
    name = f"attachments-{os.getpid()}-{request.node.name[:20].lower().replace('_', '-')}"
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name=S3_REGION)
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": S3_REGION})
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit_attachments": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": name,
                "region_name": S3_REGION,
                "endpoint_url": moto_server,
                "default_acl": None,
                "file_overwrite": False,
                "querystring_expire": settings.CHATKIT_ATTACHMENTS_URL_SECONDS,
                "client_config": Config(signature_version="s3v4", connect_timeout=2, read_timeout=2),
            },
        },
    }
    yield name
    for stored in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=stored["Key"])
    s3.delete_bucket(Bucket=name)


def s3_client(moto_server: str):
    return boto3.client("s3", endpoint_url=moto_server, region_name=S3_REGION)
