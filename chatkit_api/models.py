from django.db import models


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
