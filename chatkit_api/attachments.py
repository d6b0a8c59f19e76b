"""Files visitors attach in self-hosted mode: limits, where the bytes go, signed links, and
what the model reads of them.

ChatKit's two-phase upload (the widget's `uploadStrategy: {type: "two_phase"}`):
`attachments.create` declares a file's name, size and type, which are checked against the
limits before anything is issued; the reply tells the widget where to upload it:

- with an S3 bucket (CHATKIT_ATTACHMENTS_BUCKET): a presigned PUT straight to S3 whose
  signature covers the declared Content-Type and Content-Length, so S3 refuses any other
  body, and the bytes never pass through this service (or Lambda). The file is tagged
  unsent until a message uses it, so the bucket deletes what is never sent;
- without one: this service's upload endpoint, `PUT /api/chatkit/attachments/<id>/upload`
  with a token in the URL that is signed, bound to the visitor and short-lived; the file
  goes to the local disk (CHATKIT_ATTACHMENTS_DIR).

ChatKit.js sends a PUT's body as the file itself, and a POST's as multipart with a `file`
field (openai-chatkit's upload guide); the endpoint takes both.

A message that uses attachments has each checked again before anything is stored: the
visitor's own, not in another thread, uploaded, no larger than the limit and than declared,
and beginning as a file of its declared type does. Files reach the model as Responses API
input parts: images as `input_image`, anything else (PDF) as `input_file`, both as base64 data
URLs. Each turn sends the newest message's files, and earlier messages' only while they fit
a budget (EARLIER_FILES_BUDGET_LARGEST_FILES); older ones reach the model as a note.

Image previews and the admin's links are short-lived signed URLs, signed afresh each time
attachments are loaded; nothing is public. A file goes with its row, however the row is
deleted (chatkit_api.attachment_storage).
"""

import base64
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError
from chatkit.types import (
    Attachment,
    AttachmentUploadDescriptor,
    FileAttachment,
    ImageAttachment,
)
from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage
from openai.types.responses import (
    ResponseInputFileParam,
    ResponseInputImageParam,
    ResponseInputTextParam,
)
from pydantic import AnyUrl

from chatkit_api.attachment_storage import FILE_PREFIX, attachment_storage
from chatkit_api.exceptions import (
    AttachmentAlreadyUploaded,
    AttachmentLinkExpired,
    AttachmentRefused,
    AttachmentStorageFailed,
    AttachmentsUnavailable,
    AttachmentTooLarge,
    ChatKitItemNotFound,
)
from chatkit_api.models import ChatKitAttachment, char_limit
from chatkit_api.rendering import size_text
from chatkit_api.time_budget import time_left

logger = logging.getLogger(__name__)

_SIGNING_SALT = "chatkit_api.attachment"
UPLOAD = "upload"
READ = "read"
# An S3 upload's tag until a message uses it (see template.yaml's DeleteFilesNeverSent).
UNSENT_TAG = "chatkit=unsent"

# What a file of each type begins with: a file must be what it was declared to be.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
}
_HEAD_BYTES = 16

# Every turn reads the files it sends to the model from storage and sends them inline, so
# earlier messages' files go again only while, newest first, they add up to no more than this
# many of the largest files allowed (CHATKIT_ATTACHMENTS_MAX_BYTES).
EARLIER_FILES_BUDGET_LARGEST_FILES = 2


def _on_disk(storage: Storage) -> bool:
    """Files kept by this service (uploaded through it, read through it), not in S3."""
    return isinstance(storage, FileSystemStorage)


def _s3_client(storage: Storage) -> Any:
    return storage.connection.meta.client  # type: ignore[attr-defined]


def _storage_failed(exc: Exception) -> AttachmentStorageFailed:
    logger.error("The attachments storage failed", exc_info=exc)
    return AttachmentStorageFailed()


def _content_matches(mime_type: str, head: bytes) -> bool:
    """Whether a file beginning with `head` is of `mime_type`, for the types that say so in
    their first bytes; a type that does not (an allowed text type) is taken as declared."""
    if mime_type == "image/webp":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    signatures = _SIGNATURES.get(mime_type)
    return signatures is None or head.startswith(signatures)


def _base_type(mime_type: str) -> str:
    return mime_type.split(";")[0].strip().lower()


# --- signed links ------------------------------------------------------------------


def _salt(purpose: str, visitor_id: str) -> str:
    # Bound to the visitor without naming them in the URL: a token is only valid for the
    # attachment's owner's salt.
    return f"{_SIGNING_SALT}.{purpose}.{visitor_id}"


def _token(attachment_id: str, visitor_id: str, purpose: str) -> str:
    return signing.dumps(attachment_id, salt=_salt(purpose, visitor_id))


def _row_for_token(attachment_id: str, token: str, purpose: str) -> ChatKitAttachment:
    """The attachment a signed link is for; 404 for any other id or token, 403 once expired."""
    row = ChatKitAttachment.objects.filter(pk=attachment_id).first()
    if row is None:
        raise ChatKitItemNotFound("Not found.")
    try:
        signed_id = signing.loads(
            token, salt=_salt(purpose, row.visitor_id), max_age=settings.CHATKIT_ATTACHMENTS_URL_SECONDS
        )
    except signing.SignatureExpired:
        raise AttachmentLinkExpired() from None
    except signing.BadSignature:
        raise ChatKitItemNotFound("Not found.") from None
    if signed_id != attachment_id:
        raise ChatKitItemNotFound("Not found.")
    return row


def _local_url(api_url: str, attachment_id: str, visitor_id: str, purpose: str) -> str:
    action = "upload" if purpose == UPLOAD else "content"
    token = _token(attachment_id, visitor_id, purpose)
    return f"{api_url}/attachments/{attachment_id}/{action}?token={token}"


def _read_url(storage: Storage, *, file: str, attachment_id: str, visitor_id: str, api_url: str) -> str:
    """A short-lived URL that serves the file: presigned on S3, a signed link here otherwise."""
    if _on_disk(storage):
        return _local_url(api_url, attachment_id, visitor_id, READ)
    return storage.url(file, expire=settings.CHATKIT_ATTACHMENTS_URL_SECONDS)  # type: ignore[call-arg]


def attachment_staff_url(row: ChatKitAttachment, *, api_url: str) -> str:
    """Where the admin sends staff to open a file: a short-lived signed URL."""
    return _read_url(
        attachment_storage(), file=row.file, attachment_id=row.id, visitor_id=row.visitor_id, api_url=api_url
    )


def attachment_with_fresh_urls(attachment: Attachment, *, visitor_id: str, api_url: str) -> Attachment:
    """The attachment as the widget gets it: no upload instructions once created, and an
    image's preview signed afresh, so that an old thread still shows it."""
    file = (attachment.metadata or {}).get("file")
    update: dict[str, Any] = {"upload_descriptor": None}
    if isinstance(attachment, ImageAttachment) and file:
        update["preview_url"] = AnyUrl(
            _read_url(
                attachment_storage(),
                file=file,
                attachment_id=attachment.id,
                visitor_id=visitor_id,
                api_url=api_url,
            )
        )
    return attachment.model_copy(update=update)


# --- creating an attachment --------------------------------------------------------


def _check_declared(*, size: int, mime_type: str) -> None:
    allowed = settings.CHATKIT_ATTACHMENTS_MIME_TYPES
    if settings.CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE == 0 or not allowed:
        raise AttachmentRefused("Files cannot be attached here.")
    if mime_type not in allowed:
        raise AttachmentRefused(
            f"Files of type {mime_type or 'unknown'} cannot be attached. Allowed: {', '.join(allowed)}."
        )
    if size <= 0:
        raise AttachmentRefused("The file is empty.")
    limit = settings.CHATKIT_ATTACHMENTS_MAX_BYTES
    if size > limit:
        raise AttachmentTooLarge(f"The file is too large: at most {size_text(limit)}.")


def _upload_descriptor(
    storage: Storage,
    *,
    file: str,
    attachment_id: str,
    visitor_id: str,
    size: int,
    mime_type: str,
    api_url: str,
) -> AttachmentUploadDescriptor:
    headers = {"Content-Type": mime_type}
    if _on_disk(storage):
        url = _local_url(api_url, attachment_id, visitor_id, UPLOAD)
        return AttachmentUploadDescriptor(url=AnyUrl(url), method="PUT", headers=headers)
    # Signed with the type and length declared: S3 refuses a body of any other. The tag marks
    # the file as not sent yet; the bucket's lifecycle rule deletes it if it stays so.
    url = _s3_client(storage).generate_presigned_url(
        "put_object",
        Params={
            "Bucket": storage.bucket_name,  # type: ignore[attr-defined]
            "Key": file,
            "ContentType": mime_type,
            "ContentLength": size,
            "Tagging": UNSENT_TAG,
        },
        ExpiresIn=settings.CHATKIT_ATTACHMENTS_URL_SECONDS,
    )
    return AttachmentUploadDescriptor(
        url=AnyUrl(url), method="PUT", headers={**headers, "x-amz-tagging": UNSENT_TAG}
    )


def attachment_new(*, visitor_id: str, name: str, size: int, mime_type: str, api_url: str) -> Attachment:
    """A new attachment for the visitor, with where to upload it; refused (400, 413) before
    any upload URL is issued when the limits do not allow the file."""
    storage = attachment_storage()
    if _on_disk(storage) and settings.RUNNING_ON_LAMBDA:
        raise AttachmentsUnavailable()
    mime_type = _base_type(mime_type)
    _check_declared(size=size, mime_type=mime_type)
    attachment_id = f"atc_{uuid.uuid4().hex}"
    file = f"{FILE_PREFIX}{attachment_id}"
    name = name.strip()[: char_limit(ChatKitAttachment, "name")] or "file"
    try:
        descriptor = _upload_descriptor(
            storage,
            file=file,
            attachment_id=attachment_id,
            visitor_id=visitor_id,
            size=size,
            mime_type=mime_type,
            api_url=api_url,
        )
        fields: dict[str, Any] = {
            "id": attachment_id,
            "name": name,
            "mime_type": mime_type,
            "upload_descriptor": descriptor,
            # Kept with the attachment and in the messages that carry it; never sent to the widget.
            "metadata": {"size": size, "file": file},
        }
        if mime_type.startswith("image/"):
            preview = _read_url(
                storage, file=file, attachment_id=attachment_id, visitor_id=visitor_id, api_url=api_url
            )
            return ImageAttachment(preview_url=preview, **fields)  # type: ignore[arg-type]
        return FileAttachment(**fields)
    except (BotoCoreError, ClientError) as exc:
        raise _storage_failed(exc) from exc


# --- uploading through this service ------------------------------------------------


def attachment_upload_permit(*, attachment_id: str, token: str) -> ChatKitAttachment:
    """The attachment an upload to this service's endpoint is for, checked before its body is
    read, so that a request without a valid token costs no more than the token's check.

    404 for another attachment's (or visitor's) token, 403 once it has expired, 409 when the
    file is already there.
    """
    row = _row_for_token(attachment_id, token, UPLOAD)
    storage = attachment_storage()
    if not _on_disk(storage) or not row.file:
        raise ChatKitItemNotFound("Not found.")
    if storage.exists(row.file):
        raise AttachmentAlreadyUploaded()
    if row.size > settings.CHATKIT_ATTACHMENTS_MAX_BYTES:
        raise AttachmentTooLarge(
            f"The file is too large: at most {size_text(settings.CHATKIT_ATTACHMENTS_MAX_BYTES)}."
        )
    return row


def attachment_upload_keep(row: ChatKitAttachment, *, content_type: str, body: IO[bytes]) -> None:
    """Keep the file uploaded for `row` (see `attachment_upload_permit`), if it is the one
    declared: 400 when the body is not of the declared type and size."""
    storage = attachment_storage()
    if _base_type(content_type) != row.mime_type:
        raise AttachmentRefused(f"The file must be sent as {row.mime_type}, as declared.")
    data = body.read(row.size + 1)
    if len(data) != row.size:
        raise AttachmentRefused(f"The file must be {row.size} bytes, as declared.")
    if not _content_matches(row.mime_type, data[:_HEAD_BYTES]):
        raise AttachmentRefused(f"The file is not a {row.mime_type} file.")
    saved = storage.save(row.file, ContentFile(data))
    if saved != row.file:
        # Another upload of the same file finished first.
        storage.delete(saved)
        raise AttachmentAlreadyUploaded()


def attachment_file_open(*, attachment_id: str, token: str) -> tuple[ChatKitAttachment, IO[bytes]]:
    """The attachment a signed read link is for, and its file opened for reading."""
    row = _row_for_token(attachment_id, token, READ)
    storage = attachment_storage()
    if not _on_disk(storage) or not row.file or not storage.exists(row.file):
        raise ChatKitItemNotFound("Not found.")
    return row, storage.open(row.file, "rb")


# --- using attachments in a message ------------------------------------------------


def _stored_bytes(storage: Storage, file: str, length: int) -> tuple[int, bytes] | None:
    """The stored file's size and its first `length` bytes; None when it is not there.

    On S3 that is one ranged GET (its Content-Range gives the size); django-storages' own file
    object would ask for the object's head twice and download all of it.
    """
    if _on_disk(storage):
        if not storage.exists(file):
            return None
        with storage.open(file, "rb") as stored:
            return storage.size(file), stored.read(length)
    try:
        reply = _s3_client(storage).get_object(
            Bucket=storage.bucket_name,  # type: ignore[attr-defined]
            Key=file,
            Range=f"bytes=0-{length - 1}",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    with reply["Body"] as body:
        return int(reply["ContentRange"].rpartition("/")[2]), body.read()


def _s3_call_in_time(storage: Storage) -> None:
    """A request asks S3 only while one whole call (its tries included) fits in what is left of
    its time budget (each try is bounded by the client's timeouts, see settings.STORAGES)."""
    left = time_left()
    if not _on_disk(storage) and left is not None and left < 2 * settings.STORE_WAIT_SECONDS:
        raise AttachmentStorageFailed("The file storage could not be asked in time. Try again.")


def _stored_head(storage: Storage, file: str) -> tuple[int, bytes] | None:
    _s3_call_in_time(storage)
    try:
        return _stored_bytes(storage, file, _HEAD_BYTES)
    except (BotoCoreError, ClientError, OSError) as exc:
        raise _storage_failed(exc) from exc


def attachments_check_for_message(
    *, visitor_id: str, thread_id: str | None, attachment_ids: Iterable[str]
) -> None:
    """Refuse a message whose attachments are too many, another visitor's (404), already in
    another thread, not uploaded, or no longer within the limits; before anything of it is
    stored. `thread_id` is the thread the message goes to, None for one that starts a thread."""
    ids = list(dict.fromkeys(attachment_ids))
    if not ids:
        return
    most = settings.CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE
    if len(ids) > most:
        raise AttachmentRefused(f"At most {most} files can be attached to a message.")
    rows = {row.id: row for row in ChatKitAttachment.objects.filter(pk__in=ids, visitor_id=visitor_id)}
    storage = attachment_storage()
    for attachment_id in ids:
        row = rows.get(attachment_id)
        if row is None:
            raise ChatKitItemNotFound(f"Not found: Attachment {attachment_id} not found.")
        if row.thread_id is not None and row.thread_id != thread_id:
            # Saving the message would move the file to this thread, and deleting this thread
            # would then delete the file the other thread's message still shows.
            raise AttachmentRefused(f"{row.name} belongs to another conversation. Attach the file again.")
        if not row.file:
            raise AttachmentRefused(f"{row.name} cannot be attached again: its file is gone.")
        if row.mime_type not in settings.CHATKIT_ATTACHMENTS_MIME_TYPES:
            raise AttachmentRefused(f"Files of type {row.mime_type} cannot be attached.")
        stored = _stored_head(storage, row.file)
        if stored is None:
            raise AttachmentRefused(f"{row.name} was not uploaded. Attach it again.")
        size, head = stored
        if size != row.size or size > settings.CHATKIT_ATTACHMENTS_MAX_BYTES:
            raise AttachmentTooLarge(
                f"{row.name} is not the size declared or is over the limit of "
                f"{size_text(settings.CHATKIT_ATTACHMENTS_MAX_BYTES)}."
            )
        if not _content_matches(row.mime_type, head):
            raise AttachmentRefused(f"{row.name} is not a {row.mime_type} file.")
    if not _on_disk(storage):
        _mark_sent(storage, [rows[attachment_id].file for attachment_id in ids])


def _mark_sent(storage: Storage, files: list[str]) -> None:
    """Take the "unsent" tag off files a message uses, so that the bucket keeps them."""
    client = _s3_client(storage)
    try:
        for file in files:
            _s3_call_in_time(storage)
            client.delete_object_tagging(Bucket=storage.bucket_name, Key=file)  # type: ignore[attr-defined]
    except (BotoCoreError, ClientError) as exc:
        raise _storage_failed(exc) from exc


def _gone(attachment: Attachment, why: str) -> ResponseInputTextParam:
    return ResponseInputTextParam(
        type="input_text", text=f"[The visitor attached {attachment.name} ({attachment.mime_type}); {why}.]"
    )


def _not_sent_again(attachment: Attachment) -> ResponseInputTextParam:
    return ResponseInputTextParam(
        type="input_text",
        text=f"[The visitor attached {attachment.name} ({attachment.mime_type}) earlier; not sent again.]",
    )


def attachments_sent_whole(messages: Sequence[Sequence[Attachment]]) -> set[str]:
    """The ids of the attachments whose files go to the model this turn, given the attachments
    of each user message in the history, oldest first: all of the newest message's (checked
    when it was sent), then earlier ones, newest first, while they fit the budget."""
    if not messages:
        return set()
    *earlier, newest = messages
    sent = {attachment.id for attachment in newest}
    budget = EARLIER_FILES_BUDGET_LARGEST_FILES * settings.CHATKIT_ATTACHMENTS_MAX_BYTES
    for message in reversed(earlier):
        for attachment in message:
            size = int((attachment.metadata or {}).get("size", 0))
            if size > budget:
                return sent
            budget -= size
            sent.add(attachment.id)
    return sent


def attachment_model_input(
    attachment: Attachment, *, sent_whole: bool = True
) -> ResponseInputImageParam | ResponseInputFileParam | ResponseInputTextParam:
    """The attachment as the model reads it; a note saying so when it is not `sent_whole`
    (see attachments_sent_whole), or its file is not there (a thread imported from managed
    ChatKit, whose files stayed with OpenAI; a purged file) or no longer fits the limits."""
    if not sent_whole:
        return _not_sent_again(attachment)
    file = (attachment.metadata or {}).get("file")
    if not file:
        return _gone(attachment, "the file is gone")
    limit = settings.CHATKIT_ATTACHMENTS_MAX_BYTES
    storage = attachment_storage()
    try:
        stored = _stored_bytes(storage, file, limit + 1)
    except (BotoCoreError, ClientError, OSError) as exc:
        logger.error("Attachment %s could not be read", attachment.id, exc_info=exc)
        return _gone(attachment, "the file could not be read")
    if stored is None:
        return _gone(attachment, "the file is gone")
    size, data = stored
    if (
        size > limit
        or attachment.mime_type not in settings.CHATKIT_ATTACHMENTS_MIME_TYPES
        or not _content_matches(attachment.mime_type, data[:_HEAD_BYTES])
    ):
        return _gone(attachment, "the file is not one this service accepts")
    data_url = f"data:{attachment.mime_type};base64,{base64.b64encode(data).decode('ascii')}"
    if isinstance(attachment, ImageAttachment):
        return ResponseInputImageParam(type="input_image", detail="auto", image_url=data_url)
    return ResponseInputFileParam(type="input_file", file_data=data_url, filename=attachment.name)
