from django.db import models
from django.utils import timezone


def char_limit(model: type[models.Model], name: str) -> int:
    """The most characters the model's text field `name` holds, to cut a value to."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.CharField) or field.max_length is None:
        raise TypeError(f"{model.__name__}.{name} is not a text field with a length")
    return field.max_length


class TranscriptStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class DeliveryState(models.TextChoices):
    """What SES reported about a message after accepting it (through SNS notifications)."""

    UNREPORTED = "unreported", "No report yet"
    DELIVERED = "delivered", "Delivered"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"


class Transcript(models.Model):
    """One chat transcript with the visitor's lead details, recorded before it is mailed.

    A row is never deleted because mail failed: it stays `failed`, with the error, until
    someone resends it.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    thread_id = models.CharField(max_length=128, db_index=True)
    # As long as a ChatKit `user` may be: a thread imported from managed ChatKit keeps its owner.
    visitor_id = models.CharField(
        max_length=512, blank=True, help_text="The ChatKit user that owns the thread."
    )
    requested_by = models.CharField(
        max_length=16, help_text="Who asked for the mail: the visitor's browser or a server."
    )

    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    phone = models.CharField(max_length=50, blank=True)
    vehicle = models.CharField(max_length=200, blank=True)
    details = models.TextField(blank=True)
    mode = models.CharField(max_length=32, default="quote")
    page_url = models.URLField(max_length=2000, blank=True)

    visitor_copy = models.BooleanField(
        default=False, help_text="The visitor asked for a recap and visitor copies are allowed."
    )
    recipients = models.JSONField(default=list, help_text="Every address the transcript is for.")
    subject = models.CharField(max_length=300, blank=True)
    item_count = models.PositiveIntegerField(default=0)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)

    status = models.CharField(
        max_length=16,
        choices=TranscriptStatus.choices,
        default=TranscriptStatus.PENDING,
        db_index=True,
    )
    error = models.TextField(blank=True, help_text="The last error, if the last attempt failed.")
    attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    sending_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A send claimed the transcript then and has not finished. A claim older than "
        "TRANSCRIPT_PENDING_TIMEOUT_MINUTES belongs to a process that died, and the next send takes it over.",
    )
    delivery_state = models.CharField(
        max_length=16,
        choices=DeliveryState.choices,
        default=DeliveryState.UNREPORTED,
        db_index=True,
        help_text="What SES reported for the latest message to each audience: the worst of "
        "its recipients' reports, or delivered once every recipient's delivery is reported.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("resend_transcript", "Can resend transcripts")]

    def __str__(self) -> str:
        return f"{self.name or 'Website visitor'} - {self.mode} ({self.thread_id})"


class EmailAudience(models.TextChoices):
    STAFF = "staff", "Staff"
    VISITOR = "visitor", "Visitor copy"
    OVERRIDE = "override", "Sent to a chosen address"


class TranscriptEmail(models.Model):
    """One message handed to SES for a transcript: every attempt is kept."""

    transcript = models.ForeignKey(Transcript, on_delete=models.CASCADE, related_name="emails")
    audience = models.CharField(max_length=16, choices=EmailAudience.choices)
    to = models.JSONField(default=list)
    reply_to = models.CharField(max_length=254, blank=True)
    status = models.CharField(
        max_length=16, choices=TranscriptStatus.choices, default=TranscriptStatus.PENDING
    )
    ses_message_id = models.CharField(max_length=200, blank=True, db_index=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_audience_display()} to {', '.join(self.to)} ({self.status})"


class DeliveryReport(models.Model):
    """One SES report (delivery, bounce or complaint) about one recipient of one message.

    Reports are kept as they arrive, never merged: SES does not promise their order, and a
    recipient can be delivered first and bounce or complain later.
    """

    email = models.ForeignKey(TranscriptEmail, on_delete=models.CASCADE, related_name="reports")
    recipient = models.CharField(max_length=254)
    state = models.CharField(max_length=16, choices=DeliveryState.choices)
    bounce_type = models.CharField(
        max_length=32, blank=True, help_text="Permanent, Transient or Undetermined."
    )
    bounce_subtype = models.CharField(
        max_length=64, blank=True, help_text="e.g. General, NoEmail, MailboxFull."
    )
    detail = models.CharField(
        max_length=1000,
        blank=True,
        help_text="The receiving server's answer, the bounce diagnostic or the complaint type.",
    )
    reported_at = models.DateTimeField(help_text="When SES says it happened.")
    received_at = models.DateTimeField(auto_now_add=True)
    sns_message_id = models.CharField(max_length=100, help_text="The SNS notification that carried it.")

    class Meta:
        ordering = ["reported_at", "id"]
        constraints = [
            # SNS delivers at least once: the same notification may arrive again.
            models.UniqueConstraint(
                fields=["sns_message_id", "email", "recipient"], name="delivery_report_once_per_notification"
            )
        ]

    def __str__(self) -> str:
        return f"{self.recipient}: {self.get_state_display()}"


class ChatKitThread(models.Model):
    """A conversation kept by this service in self-hosted mode, owned by one visitor.

    `data` is the thread's ChatKit metadata as the SDK serialises it (status, title, metadata);
    the columns beside it are what the store filters and sorts on.
    """

    id = models.CharField(primary_key=True, max_length=128)
    visitor_id = models.CharField(
        max_length=512, help_text="The visitor (cookie) that owns the thread, or the managed thread's user."
    )
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True, help_text="The last change to the thread or its items.")
    data = models.JSONField(default=dict)
    imported_at = models.DateTimeField(
        "imported from managed ChatKit",
        null=True,
        blank=True,
        help_text="When `import_managed_threads` last brought the thread up to date from managed ChatKit.",
    )
    import_cursor = models.CharField(
        max_length=128,
        blank=True,
        help_text="The last managed item imported; the next import reads on from there.",
    )
    running_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="An answer is being written on the thread until it ends, at the latest until then.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["visitor_id", "created_at", "id"], name="chatkit_thread_visitor_idx")]
        verbose_name = "ChatKit thread"

    def __str__(self) -> str:
        return self.title or self.id


class ChatKitThreadItem(models.Model):
    """One item of a self-hosted thread (a message, widget, tool call, task, ...) as ChatKit JSON."""

    thread = models.ForeignKey(ChatKitThread, on_delete=models.CASCADE, related_name="items")
    item_id = models.CharField(max_length=128)
    type = models.CharField(max_length=32)
    created_at = models.DateTimeField()
    data = models.JSONField()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["thread", "item_id"], name="chatkit_item_unique_per_thread")
        ]
        indexes = [models.Index(fields=["thread", "created_at", "id"], name="chatkit_item_order_idx")]
        verbose_name = "ChatKit thread item"

    def __str__(self) -> str:
        return f"{self.type} {self.item_id}"


class FeedbackKind(models.TextChoices):
    """The two buttons ChatKit shows under an answer."""

    POSITIVE = "positive", "Thumbs up"
    NEGATIVE = "negative", "Thumbs down"


class ChatKitFeedback(models.Model):
    """A visitor's thumbs up or down on an item of a self-hosted thread (an answer, a widget,
    a tool call), and when they gave it.

    One row per item and visitor: a visitor who changes their mind replaces their earlier
    verdict, so that the thread shows what the visitor thinks of the answer now, and clicking
    again and again counts once.
    """

    item = models.ForeignKey(ChatKitThreadItem, on_delete=models.CASCADE, related_name="feedback")
    visitor_id = models.CharField(max_length=512, help_text="The visitor (cookie) that gave it.")
    kind = models.CharField(max_length=16, choices=FeedbackKind.choices)
    given_at = models.DateTimeField(help_text="When the visitor gave their latest verdict on the item.")

    class Meta:
        ordering = ["given_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "visitor_id"], name="chatkit_feedback_once_per_item_and_visitor"
            )
        ]
        verbose_name = "ChatKit feedback"
        verbose_name_plural = "ChatKit feedback"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.item_id}"


class ChatKitAttachment(models.Model):
    """A file a visitor attached: its ChatKit metadata here, its bytes in the attachments
    storage (STORAGES["chatkit_attachments"]) under `file`, which goes when the row does.

    A row without a thread is an upload not (yet) sent in a message.
    """

    id = models.CharField(primary_key=True, max_length=128)
    visitor_id = models.CharField(max_length=64, db_index=True)
    thread = models.ForeignKey(
        ChatKitThread, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    name = models.CharField(max_length=300)
    mime_type = models.CharField(max_length=200)
    size = models.PositiveBigIntegerField(
        default=0, help_text="Bytes, as the visitor's browser declared them."
    )
    file = models.CharField(
        max_length=300,
        blank=True,
        help_text="The file's name in the attachments storage; empty for a managed thread's "
        "attachment, whose file stayed with OpenAI.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    data = models.JSONField()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "ChatKit attachment"

    def __str__(self) -> str:
        return self.name


class IdempotencyKey(models.Model):
    """A transcript request already seen, so that a retry does not mail the transcript twice.

    `key` is the caller's Idempotency-Key header, or for a request without one a digest of
    the request itself: an identical request within a short window is the same request.
    """

    caller = models.CharField(max_length=64, help_text="Who sent the request: 'server' or the visitor id.")
    key = models.CharField(max_length=300)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request's fields.")
    transcript = models.ForeignKey(
        Transcript, null=True, blank=True, on_delete=models.CASCADE, related_name="idempotency_keys"
    )
    locked_until = models.DateTimeField(
        null=True, blank=True, help_text="Set while a request works on it; a later one gets 409 until then."
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["caller", "key"], name="idempotency_key_unique_per_caller"),
        ]

    def __str__(self) -> str:
        return f"{self.caller}: {self.key}"


class RateLimitCounter(models.Model):
    """Requests counted against one rate limit, for one subject, in one window."""

    key = models.CharField(max_length=150, primary_key=True)
    count = models.PositiveIntegerField()
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.key}: {self.count}"
