import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer
from moto.ses.models import ses_backends

from tests.conftest import SES_REGION, STAFF, TOKEN
from tests.fake_chatkit import user_message

REPO = Path(__file__).resolve().parent.parent


def configured_endpoint(**environment: str) -> str:
    """AWS_SES_REGION_ENDPOINT_URL as the settings compute it from this environment."""
    code = "from django.conf import settings; print(settings.AWS_SES_REGION_ENDPOINT_URL)"
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "chatkit_site.settings",
        "DJANGO_SECRET_KEY": "x" * 50,
        **environment,
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_standard_aws_endpoint_variables_are_honoured_in_order():
    assert configured_endpoint() == "None"
    assert configured_endpoint(AWS_ENDPOINT_URL="http://all:4566") == "http://all:4566"
    both = {"AWS_ENDPOINT_URL": "http://all:4566", "AWS_ENDPOINT_URL_SES": "http://ses:4566"}
    assert configured_endpoint(**both) == "http://ses:4566"
    assert configured_endpoint(**both, AWS_ENDPOINT_URL_SESV2="http://v2:4566") == "http://v2:4566"


@pytest.fixture
def moto_server(aws_credentials):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.mark.django_db
def test_mail_reaches_an_ses_endpoint_such_as_localstack(fake_chatkit, moto_server, settings, api):
    import boto3

    settings.EMAIL_BACKEND = "django_ses.SESBackend"
    settings.AWS_SES_REGION_NAME = SES_REGION
    settings.AWS_SES_REGION_ENDPOINT_URL = moto_server
    boto3.client("ses", region_name=SES_REGION, endpoint_url=moto_server).verify_email_identity(
        EmailAddress="chat@shop.example"
    )
    backend = ses_backends[DEFAULT_ACCOUNT_ID][SES_REGION]
    backend.sent_messages.clear()
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("via the endpoint")])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    response = api.post("/api/chatkit/transcript", {"threadId": thread.id}, format="json")

    assert response.status_code == 200
    [sent] = backend.sent_messages
    assert STAFF in sent.destinations
    assert "via the endpoint" in sent.raw_data
