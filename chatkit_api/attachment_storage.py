"""Where visitors' attachments are kept (STORAGES["chatkit_attachments"]: S3 with
CHATKIT_ATTACHMENTS_BUCKET, else the local disk), and the rule that a file goes with its row.

Light on purpose: the app loads it at start-up in every mode, to connect the receiver.
"""

import logging
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from chatkit_api.models import ChatKitAttachment

logger = logging.getLogger(__name__)

STORAGE_NAME = "chatkit_attachments"
# Every file's name starts so; on S3 the function's policy (template.yaml) grants this prefix only.
FILE_PREFIX = "attachments/"


def attachment_storage() -> Storage:
    return storages[STORAGE_NAME]


def attachments_accepted() -> bool:
    """Whether visitors may attach files here: some are allowed (CHATKIT_ATTACHMENTS_*), and
    there is somewhere to keep them (not Lambda's read-only disk)."""
    allowed = settings.CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE > 0 and bool(
        settings.CHATKIT_ATTACHMENTS_MIME_TYPES
    )
    on_disk = isinstance(attachment_storage(), FileSystemStorage)
    return allowed and not (on_disk and settings.RUNNING_ON_LAMBDA)


def uploads_received() -> bool:
    """Whether visitors' files are uploaded to this service (accepted, and kept on its own
    disk), rather than straight to S3 or not at all."""
    return attachments_accepted() and isinstance(attachment_storage(), FileSystemStorage)


def _file_delete(file: str) -> None:
    try:
        attachment_storage().delete(file)
    except Exception:
        # The row is gone and nothing else will delete the file: say so where operators look.
        logger.exception("The file %s of a deleted attachment could not be deleted; delete it by hand", file)


@receiver(post_delete, sender=ChatKitAttachment)
def _file_delete_after_commit(
    sender: type[ChatKitAttachment], instance: ChatKitAttachment, **kwargs: Any
) -> None:
    """However a row goes (the widget, a deleted thread, a purge, the admin), its file goes
    once the deletion is committed, never while the row could still come back."""
    if instance.file:
        transaction.on_commit(partial(_file_delete, instance.file))
