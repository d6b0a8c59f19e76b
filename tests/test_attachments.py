"""Self-hosted attachments: the two-phase upload into S3 (moto's server, over HTTP) or through
this service to the local disk, the limits, per-visitor scoping, what the model receives, and
files going with their rows."""

import base64
import json
import logging
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import time_machine
from botocore.config import Config
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from chatkit_api.attachments import EARLIER_FILES_BUDGET_LARGEST_FILES
from chatkit_api.models import ChatKitAttachment, ChatKitThread
from tests.chatkit_protocol import ChatKitBrowser, body_of, thread_id_of, user_input
from tests.conftest import TOKEN, s3_client
from tests.fake_model import Say
from tests.loopback import blackhole
from tests.settings_probe import python_run
from tests.test_self_hosted_transcripts import send_transcript

pytestmark = pytest.mark.django_db

# The smallest files that are what they say: a 1x1 PNG and a one-page PDF.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


def data_url(mime_type: str, data: bytes) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode()}"


@pytest.fixture
def on_disk(settings, tmp_path: Path) -> Path:
    """Attachments on the local disk, uploaded through this service (no bucket)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit_attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    return tmp_path


def create(browser: ChatKitBrowser, name: str, data: bytes, mime_type: str) -> dict:
    return browser.call("attachments.create", name=name, size=len(data), mime_type=mime_type)


def upload_here(attachment: dict, data: bytes, *, content_type: str | None = None) -> Client:
    """The widget's PUT of the file to the upload URL this service issued."""
    descriptor = attachment["upload_descriptor"]
    assert descriptor["method"] == "PUT"
    url = urlsplit(descriptor["url"])
    response = Client().put(
        f"{url.path}?{url.query}",
        data,
        content_type=content_type or descriptor["headers"]["Content-Type"],
    )
    assert response.status_code == 200, response.content
    return response


def local_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


# --- S3: the browser uploads straight to the bucket -----------------------------------


def test_an_image_uploads_to_s3_by_a_presigned_put_and_reaches_a_sites_agent(
    self_hosted, bucket, moto_server
):
    self_hosted.script.append(Say("A brake pad."))
    browser = ChatKitBrowser()

    attachment = create(browser, "pad.png", PNG, "image/png")

    descriptor = attachment["upload_descriptor"]
    assert attachment["type"] == "image"
    assert "metadata" not in attachment
    assert descriptor["method"] == "PUT"
    assert descriptor["headers"] == {"Content-Type": "image/png", "x-amz-tagging": "chatkit=unsent"}
    signed = parse_qs(urlsplit(descriptor["url"]).query)
    assert urlsplit(descriptor["url"]).path == f"/{bucket}/attachments/{attachment['id']}"
    # S3 checks what the signature covers: a body of another type or length is refused.
    assert signed["X-Amz-SignedHeaders"] == ["content-length;content-type;host;x-amz-tagging"]
    assert signed["X-Amz-Expires"] == ["600"]

    # The browser's upload: the file as the body, with the headers the descriptor names.
    uploaded = requests.put(descriptor["url"], data=PNG, headers=descriptor["headers"], timeout=5)
    assert uploaded.status_code == 200
    stored = s3_client(moto_server).get_object(Bucket=bucket, Key=f"attachments/{attachment['id']}")
    assert stored["Body"].read() == PNG
    assert stored["ContentType"] == "image/png"
    key = {"Bucket": bucket, "Key": f"attachments/{attachment['id']}"}
    # Until a message uses it, the bucket's lifecycle rule may delete it.
    assert s3_client(moto_server).get_object_tagging(**key)["TagSet"] == [
        {"Key": "chatkit", "Value": "unsent"}
    ]

    events = browser.stream(
        "threads.create", input=user_input("What is this?", attachments=[attachment["id"]])
    )

    assert s3_client(moto_server).get_object_tagging(**key)["TagSet"] == []
    [call] = self_hosted.calls
    [message] = [item for item in call.input if item.get("role") == "user"]
    assert {"type": "input_image", "detail": "auto", "image_url": data_url("image/png", PNG)} in message[
        "content"
    ]
    [user_item] = [
        event["item"]
        for event in events
        if event["type"] == "thread.item.done" and event["item"]["type"] == "user_message"
    ]
    [shown] = user_item["attachments"]
    assert shown.get("upload_descriptor") is None
    assert "metadata" not in shown
    # The preview is a presigned GET of the object, never a public URL.
    assert "X-Amz-Signature=" in shown["preview_url"]
    assert requests.get(shown["preview_url"], timeout=5).content == PNG
    row = ChatKitAttachment.objects.get(pk=attachment["id"])
    assert (row.thread_id, row.size, row.file) == (
        thread_id_of(events),
        len(PNG),
        f"attachments/{attachment['id']}",
    )


def test_deleting_a_thread_deletes_its_files_from_s3(
    self_hosted, bucket, moto_server, django_capture_on_commit_callbacks
):
    self_hosted.script.append(Say("Noted."))
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")
    descriptor = attachment["upload_descriptor"]
    requests.put(descriptor["url"], data=PNG, headers=descriptor["headers"], timeout=5)
    thread_id = thread_id_of(
        browser.stream("threads.create", input=user_input("See this", attachments=[attachment["id"]]))
    )
    s3 = s3_client(moto_server)

    with django_capture_on_commit_callbacks(execute=True):
        browser.call("threads.delete", thread_id=thread_id)

    assert not ChatKitAttachment.objects.exists()
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_file_gone_from_the_bucket_reaches_the_model_as_a_note(self_hosted, bucket, moto_server):
    self_hosted.script.extend([Say("A pad."), Say("Still a pad.")])
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")
    descriptor = attachment["upload_descriptor"]
    requests.put(descriptor["url"], data=PNG, headers=descriptor["headers"], timeout=5)
    thread_id = thread_id_of(
        browser.stream("threads.create", input=user_input("This?", attachments=[attachment["id"]]))
    )
    s3_client(moto_server).delete_object(Bucket=bucket, Key=f"attachments/{attachment['id']}")

    browser.say("And now?", thread_id)

    first, second = self_hosted.calls
    assert "[The visitor attached pad.png (image/png); the file is gone.]" not in json.dumps(first.input)
    assert "[The visitor attached pad.png (image/png); the file is gone.]" in json.dumps(second.input)


def test_a_message_with_an_attachment_never_uploaded_is_refused(self_hosted, bucket):
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")

    response = browser.post("threads.create", input=user_input("See this", attachments=[attachment["id"]]))

    assert response.status_code == 400
    assert response.json() == {"error": "pad.png was not uploaded. Attach it again."}
    assert not ChatKitThread.objects.exists()
    assert self_hosted.calls == []


def test_a_file_that_is_not_its_declared_type_is_refused_when_used(self_hosted, bucket):
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", b"<html>" + PNG[6:], "image/png")
    descriptor = attachment["upload_descriptor"]
    requests.put(descriptor["url"], data=b"<html>" + PNG[6:], headers=descriptor["headers"], timeout=5)

    response = browser.post("threads.create", input=user_input("See this", attachments=[attachment["id"]]))

    assert response.status_code == 400
    assert response.json() == {"error": "pad.png is not a image/png file."}
    assert not ChatKitThread.objects.exists()


def test_a_bucket_that_never_answers_is_a_502_within_the_budget(self_hosted, bucket, settings):
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")
    with blackhole() as port:
        options = settings.STORAGES["chatkit_attachments"]["OPTIONS"]
        settings.STORAGES = {
            **settings.STORAGES,
            "chatkit_attachments": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    **options,
                    "endpoint_url": f"http://127.0.0.1:{port}",
                    "client_config": Config(
                        signature_version="s3v4",
                        connect_timeout=0.5,
                        read_timeout=0.5,
                        retries={"total_max_attempts": 2, "mode": "standard"},
                    ),
                },
            },
        }
        started = time.monotonic()
        response = browser.post("threads.create", input=user_input("This?", attachments=[attachment["id"]]))
        seconds = time.monotonic() - started

    assert (response.status_code, response.json()) == (
        502,
        {"error": "The file storage did not answer. Try again shortly."},
    )
    # Two tries of half a second each, and the request's own work on a busy machine.
    assert seconds < 5
    assert not ChatKitThread.objects.exists()


def test_s3_is_not_asked_when_a_call_would_not_fit_in_the_time_left(self_hosted, bucket, settings):
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")
    settings.REQUEST_TIME_BUDGET_SECONDS = 1

    response = browser.post("threads.create", input=user_input("This?", attachments=[attachment["id"]]))

    assert (response.status_code, response.json()) == (
        502,
        {"error": "The file storage could not be asked in time. Try again."},
    )
    assert not ChatKitThread.objects.exists()


# --- the local disk: uploads through this service -------------------------------------


def test_an_image_and_a_pdf_uploaded_here_reach_the_default_agents_model(fake_responses, on_disk):
    browser = ChatKitBrowser()
    image = create(browser, "pad.png", PNG, "image/png")
    pdf = create(browser, "invoice.pdf", PDF, "application/pdf")

    assert image["upload_descriptor"]["url"].startswith(
        f"http://testserver/api/chatkit/attachments/{image['id']}/upload?token="
    )
    assert pdf["type"] == "file"
    upload_here(image, PNG)
    # A POST of the file as multipart with a `file` field is taken too.
    posted = Client().post(
        local_path(pdf["upload_descriptor"]["url"]),
        {"file": _named_file("invoice.pdf", PDF, "application/pdf")},
    )
    assert posted.status_code == 200, posted.content
    assert (on_disk / "attachments" / image["id"]).read_bytes() == PNG
    assert (on_disk / "attachments" / pdf["id"]).read_bytes() == PDF

    events = browser.stream(
        "threads.create", input=user_input("Price these?", attachments=[image["id"], pdf["id"]])
    )

    assert thread_id_of(events)
    [request] = fake_responses.requests
    [message] = [item for item in request["input"] if item.get("role") == "user"]
    assert {"type": "input_image", "detail": "auto", "image_url": data_url("image/png", PNG)} in message[
        "content"
    ]
    assert {
        "type": "input_file",
        "file_data": data_url("application/pdf", PDF),
        "filename": "invoice.pdf",
    } in message["content"]


def test_earlier_files_beyond_the_budget_reach_the_model_as_a_note(fake_responses, on_disk, settings):
    settings.CHATKIT_ATTACHMENTS_MAX_BYTES = len(PDF)
    browser = ChatKitBrowser()
    # One PDF more than the budget holds, in earlier messages, then an image.
    pdfs = [
        create(browser, f"quote{n}.pdf", PDF, "application/pdf")
        for n in range(EARLIER_FILES_BUDGET_LARGEST_FILES + 1)
    ]
    image = create(browser, "pad.png", PNG, "image/png")
    for attachment, data in [*((pdf, PDF) for pdf in pdfs), (image, PNG)]:
        upload_here(attachment, data)
    thread_id = thread_id_of(
        browser.stream("threads.create", input=user_input("First quote", attachments=[pdfs[0]["id"]]))
    )
    for pdf in pdfs[1:]:
        browser.stream(
            "threads.add_user_message",
            thread_id=thread_id,
            input=user_input("Another", attachments=[pdf["id"]]),
        )

    browser.stream(
        "threads.add_user_message",
        thread_id=thread_id,
        input=user_input("And this?", attachments=[image["id"]]),
    )

    last = fake_responses.requests[-1]
    messages = [item for item in last["input"] if item.get("role") == "user"]
    assert len(messages) == len(pdfs) + 1
    oldest, *fitting, newest = messages
    assert {
        "type": "input_text",
        "text": "[The visitor attached quote0.pdf (application/pdf) earlier; not sent again.]",
    } in oldest["content"]
    assert "file_data" not in json.dumps(oldest["content"])
    for message, pdf in zip(fitting, pdfs[1:], strict=True):
        assert {
            "type": "input_file",
            "file_data": data_url("application/pdf", PDF),
            "filename": pdf["name"],
        } in message["content"]
    assert {"type": "input_image", "detail": "auto", "image_url": data_url("image/png", PNG)} in newest[
        "content"
    ]
    # When it was the newest, the first PDF went whole.
    first = fake_responses.requests[0]
    assert data_url("application/pdf", PDF) in json.dumps(first["input"])


def _named_file(name: str, data: bytes, content_type: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type=content_type)


def test_an_upload_larger_than_the_api_limit_is_taken_up_to_the_attachment_limit(
    self_hosted, on_disk, settings
):
    settings.REQUEST_BODY_MAX_BYTES = 1024
    large = PNG + b"\0" * 4000
    browser = ChatKitBrowser()
    attachment = create(browser, "large.png", large, "image/png")

    upload_here(attachment, large)

    assert (on_disk / "attachments" / attachment["id"]).read_bytes() == large
    # Every other body is held to REQUEST_BODY_MAX_BYTES still.
    assert browser.post("threads.create", input=user_input("x" * 2000)).status_code == 413


def test_the_upload_endpoint_takes_only_the_file_declared(self_hosted, on_disk, settings):
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")
    path = local_path(attachment["upload_descriptor"]["url"])
    client = Client()

    wrong_type = client.put(path, PNG, content_type="application/pdf")
    wrong_size = client.put(path, PNG + b"more", content_type="image/png")
    not_a_png = client.put(path, b"x" * len(PNG), content_type="image/png")
    settings.CHATKIT_ATTACHMENTS_MAX_BYTES = 10
    over_the_limit = client.put(path, PNG, content_type="image/png")

    assert (wrong_type.status_code, wrong_type.json()) == (
        400,
        {"error": "The file must be sent as image/png, as declared."},
    )
    assert (wrong_size.status_code, wrong_size.json()) == (
        400,
        {"error": f"The file must be {len(PNG)} bytes, as declared."},
    )
    assert (not_a_png.status_code, not_a_png.json()) == (400, {"error": "The file is not a image/png file."})
    assert over_the_limit.status_code == 413
    assert not (on_disk / "attachments").exists()
    settings.CHATKIT_ATTACHMENTS_MAX_BYTES = 10 * 1024 * 1024
    upload_here(attachment, PNG)
    again = client.put(path, PNG, content_type="image/png")
    assert (again.status_code, again.json()) == (409, {"error": "This file was already uploaded."})


def test_upload_and_preview_links_expire(self_hosted, on_disk):
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")
    later = time_machine.travel(timedelta(seconds=601))

    with later:
        expired = Client().put(
            local_path(attachment["upload_descriptor"]["url"]), PNG, content_type="image/png"
        )

    assert (expired.status_code, expired.json()) == (403, {"error": "This link has expired."})


def test_an_old_threads_previews_are_signed_again_when_it_is_read(self_hosted, on_disk):
    self_hosted.script.append(Say("A pad."))
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")
    upload_here(attachment, PNG)
    events = browser.stream("threads.create", input=user_input("This?", attachments=[attachment["id"]]))
    thread_id = thread_id_of(events)
    first_preview = next(
        event["item"]["attachments"][0]["preview_url"]
        for event in events
        if event["type"] == "thread.item.done" and event["item"]["type"] == "user_message"
    )

    with time_machine.travel(timedelta(days=2)):
        assert Client().get(local_path(first_preview)).status_code == 403
        items = browser.call("items.list", thread_id=thread_id, order="asc")
        [shown] = items["data"][0]["attachments"]
        preview = Client().get(local_path(shown["preview_url"]))
        reloaded = browser.call("threads.get_by_id", thread_id=thread_id)

    assert preview.status_code == 200
    assert b"".join(preview.streaming_content) == PNG
    assert preview["Content-Type"] == "image/png"
    assert preview["Cache-Control"] == "private, max-age=600"
    assert reloaded["items"]["data"][0]["attachments"][0]["preview_url"] != first_preview


def test_on_lambda_without_a_bucket_attachments_are_refused(self_hosted, on_disk, settings):
    settings.RUNNING_ON_LAMBDA = True

    response = ChatKitBrowser().post(
        "attachments.create", name="pad.png", size=len(PNG), mime_type="image/png"
    )

    assert response.status_code == 503
    assert "CHATKIT_ATTACHMENTS_BUCKET" in response.json()["error"]
    assert not ChatKitAttachment.objects.exists()


# --- limits, checked before any upload URL is issued ---------------------------------------


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        (
            {"name": "big.png", "size": 10 * 1024 * 1024 + 1, "mime_type": "image/png"},
            413,
            "The file is too large: at most 10.0 MB.",
        ),
        (
            {"name": "page.html", "size": 100, "mime_type": "text/html"},
            400,
            "Files of type text/html cannot be attached. Allowed: image/png, image/jpeg, image/gif, "
            "image/webp, application/pdf.",
        ),
        ({"name": "empty.pdf", "size": 0, "mime_type": "application/pdf"}, 400, "The file is empty."),
    ],
)
def test_a_file_outside_the_limits_is_refused_before_an_upload_url_is_issued(
    self_hosted, bucket, params, status, error
):
    response = ChatKitBrowser().post("attachments.create", **params)

    assert response.status_code == status
    assert response.json() == {"error": error}
    assert "upload" not in body_of(response).decode()
    assert not ChatKitAttachment.objects.exists()


def test_more_attachments_than_a_message_may_carry_are_refused(self_hosted, on_disk, settings):
    settings.CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE = 1
    browser = ChatKitBrowser()
    first, second = (create(browser, name, PNG, "image/png") for name in ("a.png", "b.png"))
    for attachment in (first, second):
        upload_here(attachment, PNG)

    response = browser.post(
        "threads.create", input=user_input("Both", attachments=[first["id"], second["id"]])
    )

    assert (response.status_code, response.json()) == (
        400,
        {"error": "At most 1 files can be attached to a message."},
    )
    assert not ChatKitThread.objects.exists()


# --- per visitor ---------------------------------------------------------------------


def test_another_visitors_attachment_is_not_found(self_hosted, on_disk):
    alice, mallory = ChatKitBrowser(), ChatKitBrowser()
    hers = create(alice, "pad.png", PNG, "image/png")
    upload_here(hers, PNG)
    theirs = create(mallory, "mine.png", PNG, "image/png")

    used = mallory.post("threads.create", input=user_input("Mine now", attachments=[hers["id"]]))
    deleted = mallory.post("attachments.delete", attachment_id=hers["id"])
    # Mallory's own token does not open Alice's file, nor does Alice's token another's.
    own_token = parse_qs(urlsplit(theirs["preview_url"]).query)["token"][0]
    swapped = Client().get(f"/api/chatkit/attachments/{hers['id']}/content?token={own_token}")
    her_token = parse_qs(urlsplit(hers["preview_url"]).query)["token"][0]
    upload_over = Client().put(
        f"/api/chatkit/attachments/{theirs['id']}/upload?token={her_token}", PNG, content_type="image/png"
    )
    tampered = Client().get(local_path(hers["preview_url"]) + "x")

    for response in (used, deleted, swapped, upload_over, tampered):
        assert response.status_code == 404, response
    assert used.json() == {"error": f"Not found: Attachment {hers['id']} not found."}
    assert ChatKitAttachment.objects.filter(pk=hers["id"]).exists()
    assert (on_disk / "attachments" / hers["id"]).exists()
    assert not ChatKitThread.objects.exists()
    still_hers = Client().get(local_path(hers["preview_url"]))
    assert b"".join(still_hers.streaming_content) == PNG


def test_an_attachment_sent_in_one_thread_is_refused_in_another(
    self_hosted, on_disk, django_capture_on_commit_callbacks
):
    self_hosted.script.extend([Say("A pad."), Say("Hello again.")])
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")
    upload_here(attachment, PNG)
    first = thread_id_of(
        browser.stream("threads.create", input=user_input("This?", attachments=[attachment["id"]]))
    )
    second = thread_id_of(browser.say("Another question"))
    items_before = browser.call("items.list", thread_id=second)["data"]

    added = browser.post(
        "threads.add_user_message",
        thread_id=second,
        input=user_input("Again", attachments=[attachment["id"]]),
    )
    created = browser.post("threads.create", input=user_input("Once more", attachments=[attachment["id"]]))

    refusal = {"error": "pad.png belongs to another conversation. Attach the file again."}
    assert (added.status_code, json.loads(body_of(added))) == (400, refusal)
    assert (created.status_code, json.loads(body_of(created))) == (400, refusal)
    assert ChatKitThread.objects.count() == 2
    assert browser.call("items.list", thread_id=second)["data"] == items_before
    assert ChatKitAttachment.objects.get(pk=attachment["id"]).thread_id == first
    assert len(self_hosted.calls) == 2
    with django_capture_on_commit_callbacks(execute=True):
        browser.call("threads.delete", thread_id=second)
    assert (on_disk / "attachments" / attachment["id"]).read_bytes() == PNG
    [message] = [
        item for item in browser.call("items.list", thread_id=first)["data"] if item["type"] == "user_message"
    ]
    assert [shown["id"] for shown in message["attachments"]] == [attachment["id"]]


# --- deletion ------------------------------------------------------------------------


def test_deleting_an_attachment_deletes_its_file(self_hosted, on_disk, django_capture_on_commit_callbacks):
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")
    upload_here(attachment, PNG)

    with django_capture_on_commit_callbacks(execute=True):
        browser.call("attachments.delete", attachment_id=attachment["id"])

    assert not ChatKitAttachment.objects.exists()
    assert not (on_disk / "attachments" / attachment["id"]).exists()


def test_a_file_that_cannot_be_deleted_is_logged(
    self_hosted, on_disk, django_capture_on_commit_callbacks, caplog
):
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")
    upload_here(attachment, PNG)
    # Where the file was, something the storage cannot delete: a folder with a file in it.
    stored = on_disk / "attachments" / attachment["id"]
    stored.unlink()
    stored.mkdir()
    (stored / "kept").write_bytes(b"")

    with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
        ChatKitAttachment.objects.filter(pk=attachment["id"]).delete()

    assert not ChatKitAttachment.objects.exists()
    assert (stored / "kept").exists()
    assert (
        f"The file attachments/{attachment['id']} of a deleted attachment could not be deleted" in caplog.text
    )


# --- staff: the transcript and the admin ---------------------------------------------


def test_the_transcript_lists_each_attachment_on_its_message(self_hosted, on_disk, ses):
    self_hosted.script.append(Say("Thanks, we will price it."))
    browser = ChatKitBrowser()
    image = create(browser, "pad.png", PNG, "image/png")
    pdf = create(browser, "invoice.pdf", PDF, "application/pdf")
    upload_here(image, PNG)
    upload_here(pdf, PDF)
    thread_id = thread_id_of(
        browser.stream(
            "threads.create", input=user_input("Price these", attachments=[image["id"], pdf["id"]])
        )
    )

    response = send_transcript(
        ChatKitBrowser().client, {"threadId": thread_id}, HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )

    assert response.status_code == 200, response.content
    [mail] = ses.sent()
    assert (
        f"User: Price these\nAttachments: pad.png (image/png, {len(PNG)} bytes), "
        f"invoice.pdf (application/pdf, {len(PDF)} bytes)\n"
    ) in mail.text


def test_staff_open_an_attachment_from_the_thread_in_the_admin(self_hosted, on_disk, admin_client):
    self_hosted.script.append(Say("A pad."))
    browser = ChatKitBrowser()
    attachment = create(browser, "invoice.pdf", PDF, "application/pdf")
    upload_here(attachment, PDF)
    thread_id = thread_id_of(
        browser.stream("threads.create", input=user_input("This?", attachments=[attachment["id"]]))
    )
    # The admin quotes ids in its URLs: thr_22... would otherwise read as another id.
    file_url = reverse("admin:chatkit_api_chatkitattachment_file", args=[quote(attachment["id"])])

    page = admin_client.get(reverse("admin:chatkit_api_chatkitthread_change", args=[quote(thread_id)]))
    opened = admin_client.get(file_url)
    served = Client().get(local_path(opened["Location"]))

    assert file_url in page.content.decode()
    assert opened.status_code == 302
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == PDF
    assert served["Content-Disposition"] == 'attachment; filename="invoice.pdf"'


def test_staff_without_the_view_permission_cannot_open_attachments(self_hosted, on_disk, client):
    browser = ChatKitBrowser()
    attachment = create(browser, "pad.png", PNG, "image/png")
    upload_here(attachment, PNG)
    staff = User.objects.create_user("reader", password="pw-for-tests-only", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_chatkitthread"))
    client.force_login(staff)

    response = client.get(reverse("admin:chatkit_api_chatkitattachment_file", args=[quote(attachment["id"])]))

    assert response.status_code == 404


def test_an_upload_over_the_attachment_limit_is_refused_unread(self_hosted, on_disk, settings):
    settings.CHATKIT_ATTACHMENTS_MAX_BYTES = 100
    attachment = create(ChatKitBrowser(), "pad.png", PNG, "image/png")

    response = Client().put(
        local_path(attachment["upload_descriptor"]["url"]),
        b"\0" * (100 + 16 * 1024 + 1),
        content_type="image/png",
    )

    assert (response.status_code, response.json()) == (
        413,
        {"error": f"The request body is too large: at most {100 + 16 * 1024} bytes."},
    )


def test_an_upload_without_a_valid_token_is_refused_before_its_body_is_read(self_hosted, on_disk):
    attachment = create(ChatKitBrowser(), "pad.png", PNG, "image/png")
    path = f"/api/chatkit/attachments/{attachment['id']}/upload?token=forged"
    # Not multipart at all: reading it as a form would fail with another error than the token's.
    unreadable = b"--boundary\r\nnot a part"

    response = Client().generic(
        "POST", path, unreadable, content_type="multipart/form-data; boundary=boundary"
    )

    assert (response.status_code, response.json()) == (404, {"error": "Not found."})
    assert not (on_disk / "attachments").exists()


def test_with_a_bucket_the_upload_path_takes_no_larger_body_than_any_other(self_hosted, bucket, settings):
    settings.REQUEST_BODY_MAX_BYTES = 1024
    attachment = create(ChatKitBrowser(), "large.png", PNG + b"\0" * 4000, "image/png")

    response = Client().put(
        f"/api/chatkit/attachments/{attachment['id']}/upload?token=any",
        b"\0" * 2000,
        content_type="image/png",
    )

    assert (response.status_code, response.json()) == (
        413,
        {"error": "The request body is too large: at most 1024 bytes."},
    )


def test_links_to_the_bucket_name_its_regional_host():
    # The settings as a deployment builds them, in a fresh interpreter; signing needs no network.
    result = python_run(
        "import django; django.setup(); from django.core.files.storage import storages; "
        "print(storages['chatkit_attachments'].url('attachments/atc_1'))",
        environment={
            "DJANGO_SETTINGS_MODULE": "chatkit_site.settings",
            "DJANGO_DEBUG": "true",
            "CHATKIT_ATTACHMENTS_BUCKET": "shop-attachments",
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        },
    )

    assert result.returncode == 0, result.stderr
    assert urlsplit(result.stdout).hostname == "shop-attachments.s3.eu-west-1.amazonaws.com"


def test_the_purge_deletes_the_files_of_old_threads_and_of_uploads_never_sent(
    self_hosted, on_disk, django_capture_on_commit_callbacks
):
    self_hosted.script.append(Say("A pad."))
    browser = ChatKitBrowser()
    sent, never_sent = (create(browser, name, PNG, "image/png") for name in ("sent.png", "forgotten.png"))
    for attachment in (sent, never_sent):
        upload_here(attachment, PNG)
    browser.stream("threads.create", input=user_input("This?", attachments=[sent["id"]]))

    with time_machine.travel(timedelta(days=400)), django_capture_on_commit_callbacks(execute=True):
        call_command("purge_threads", stdout=StringIO())

    assert not ChatKitAttachment.objects.exists()
    assert list((on_disk / "attachments").iterdir()) == []
