from django.urls import re_path

from chatkit_api.apis import (
    SessionApi,
    TranscriptApi,
    attachment_content,
    attachment_upload,
    chatkit,
    ses_notifications,
)

# The trailing slash is optional: the old handler matched on the path's end and some
# frontends add one.
urlpatterns = [
    re_path(r"^chatkit/?$", chatkit, name="chatkit"),
    # A file kept by this service (no S3 bucket): its upload, and the signed links that read it.
    re_path(
        r"^chatkit/attachments/(?P<attachment_id>[A-Za-z0-9_-]{1,128})/upload/?$",
        attachment_upload,
        name="chatkit-attachment-upload",
    ),
    re_path(
        r"^chatkit/attachments/(?P<attachment_id>[A-Za-z0-9_-]{1,128})/content/?$",
        attachment_content,
        name="chatkit-attachment-content",
    ),
    re_path(r"^chatkit/session/?$", SessionApi.as_view(), name="chatkit-session"),
    re_path(r"^chatkit/transcript/?$", TranscriptApi.as_view(), name="chatkit-transcript"),
    re_path(r"^chatkit/ses-notifications/?$", ses_notifications, name="ses-notifications"),
]
