from django.urls import re_path

from chatkit_api.apis import SessionApi, TranscriptApi, chatkit, ses_notifications

# The trailing slash is optional: the old handler matched on the path's end and some
# frontends add one.
urlpatterns = [
    re_path(r"^chatkit/?$", chatkit, name="chatkit"),
    re_path(r"^chatkit/session/?$", SessionApi.as_view(), name="chatkit-session"),
    re_path(r"^chatkit/transcript/?$", TranscriptApi.as_view(), name="chatkit-transcript"),
    re_path(r"^chatkit/ses-notifications/?$", ses_notifications, name="ses-notifications"),
]
