from django.db import models
from django.utils import timezone


class TranscriptStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Transcript(models.Model):
    """One chat transcript with the visitor's lead details, recorded before it is mailed.

    A row is never deleted because mail failed: it stays `failed`, with the error, until
    someone resends it.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    thread_id = models.CharField(max_length=128, db_index=True)
    visitor_id = models.CharField(
        max_length=64, blank=True, help_text="The ChatKit user that owns the thread."
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

    class Meta:
        ordering = ["-created_at", "-id"]

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
