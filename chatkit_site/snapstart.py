"""Lambda SnapStart hooks, registered when the Lambda handler is imported.

With SnapStart, Lambda initialises one instance, snapshots its memory, and starts later
instances from that snapshot. Work done before the snapshot is free for every cold start;
state that must differ per instance is renewed after each restore.
"""

import random

from django.conf import settings
from django.db import connections
from django.template.loader import get_template
from django.urls import get_resolver
from snapshot_restore_py import register_after_restore, register_before_snapshot


def before_snapshot() -> None:
    """Import and build everything the first session and transcript calls would."""
    from chatkit_api import mail, openai_gateway

    get_resolver().url_patterns  # noqa: B018 - loads the URL conf, and with it the API views
    get_template("chatkit_api/transcript_email.html")
    if settings.OPENAI_API_KEY:
        openai_gateway._client()
    # The mail connection: django-ses's SES client, its service model loaded. No request
    # is made, so no network connection ends up in the snapshot.
    mail._open_connection(settings.EMAIL_BACKEND)
    connections.close_all()


def after_restore() -> None:
    """Renew what every restored instance would otherwise share with the others."""
    # `random` would replay the same sequence in every instance (retry jitter, for one);
    # `secrets` and uuid4, used for ids and tokens, read the OS and need nothing.
    random.seed()
    # A connection opened before the snapshot points at a socket that no longer exists.
    connections.close_all()


register_before_snapshot(before_snapshot)
register_after_restore(after_restore)
