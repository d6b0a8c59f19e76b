"""Django admin for the transcript log: read-only (it is a log), newest first, cheap to list.

Staff with "Can view transcript" read it; "Can resend transcripts" adds the Resend action.
The "Transcript readers" and "Transcript operators" groups carry those two roles.
"""

import csv
import re
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404, HttpRequest, HttpResponseRedirect, StreamingHttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from chatkit_api.exceptions import ServiceError, TranscriptSendSkipped
from chatkit_api.local_threads import thread_feedback
from chatkit_api.models import (
    ChatKitAttachment,
    ChatKitFeedback,
    ChatKitThread,
    ChatKitThreadItem,
    DeliveryReport,
    FeedbackKind,
    Transcript,
    TranscriptEmail,
)
from chatkit_api.rendering import conversation_text, feedback_colour

# Large text columns that the changelist never shows: not loaded for a page of rows.
LARGE_FIELDS = ("body_text", "body_html", "details", "error")
# A resend from the admin runs inside one web request; more belongs to the
# `resend_transcript` command, which shows progress and can run for as long as it needs.
ADMIN_RESEND_LIMIT = 20
# A spreadsheet runs a cell that starts with one of these as a formula, and visitors type
# the names and details that end up in the export. A phone number such as "+44 20 7946 0000"
# can call nothing, so it is left as it is.
_FORMULA_START = re.compile(r"^[=+\-@\t\r]")
_PLAIN_NUMBER = re.compile(r"^[+-]?[\d\s().-]*$")

# A handful of models: the navigation sidebar would take a quarter of a laptop screen from
# the transcript list; the admin's home page lists them all.
admin.site.enable_nav_sidebar = False


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a stream."""

    def write(self, value: str) -> str:
        return value


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = "; ".join(str(item) for item in value)
    elif hasattr(value, "isoformat"):
        value = timezone.localtime(value).isoformat(timespec="seconds")
    text = str(value)
    if _FORMULA_START.match(text) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def _link_if_web(url: str) -> SafeString | str:
    if url.startswith(("https://", "http://")):
        return format_html('<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, url)
    return url or "—"


def _report_parts(report: DeliveryReport) -> tuple[str, str, str, str]:
    extra = " / ".join(filter(None, [report.bounce_type, report.bounce_subtype, report.detail]))
    reported_at = timezone.localtime(report.reported_at).strftime("%Y-%m-%d %H:%M")
    return report.recipient, report.get_state_display(), f" — {extra}" if extra else "", reported_at


class TranscriptEmailInline(admin.TabularInline):
    """Every message handed to SES, with what SES reported for each recipient."""

    model = TranscriptEmail
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "created_at",
        "audience",
        "recipients",
        "reply_to",
        "status",
        "ses_message_id",
        "sent_at",
        "error",
        "delivery",
    )
    verbose_name = "message"
    verbose_name_plural = "Messages handed to SES"

    def get_queryset(self, request: HttpRequest) -> QuerySet[TranscriptEmail]:
        return super().get_queryset(request).prefetch_related("reports")

    @admin.display(description="To")
    def recipients(self, email: TranscriptEmail) -> str:
        return ", ".join(email.to)

    @admin.display(description="Delivery reports")
    def delivery(self, email: TranscriptEmail) -> SafeString | str:
        reports = list(email.reports.all())
        if not reports:
            return "No report yet" if email.ses_message_id else "—"
        return format_html_join(
            "", "<div>{}: <strong>{}</strong>{} <small>({})</small></div>", map(_report_parts, reports)
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TranscriptChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Transcript]:
        return super().get_queryset(request, exclude_parameters).defer(*LARGE_FIELDS)


# The sections of a transcript's page, and the fields each shows.
_TRANSCRIPT_SECTIONS: list[tuple[str, list[str]]] = [
    ("Lead", ["name", "email", "phone", "vehicle", "details", "mode", "page_link"]),
    ("The mail", ["subject", "recipient_list", "mail_preview", "text_body"]),
    ("Sending", ["status", "send_claim", "delivery_state", "attempts", "sent_at", "error", "visitor_copy"]),
    ("Conversation", ["thread_id", "item_count", "visitor_id", "requested_by", "created_at", "updated_at"]),
]


@admin.register(Transcript)
class TranscriptAdmin(admin.ModelAdmin):
    list_display = ["created_at", "name", "email", "mode", "recipient_list", "status", "delivery_state"]

    class Media:
        css = {"all": ["chatkit_api/admin.css"]}

    list_display_links = ["created_at", "name"]
    list_filter = ["status", "mode", "delivery_state", "created_at"]
    search_fields = ["name", "email", "phone", "vehicle", "thread_id", "body_text"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    list_per_page = 100
    # A second COUNT(*) of the whole table on every filtered page, for the "N total" link.
    show_full_result_count = False
    actions = ["resend", "export_csv"]
    inlines = [TranscriptEmailInline]
    fieldsets = [(title, {"fields": tuple(names)}) for title, names in _TRANSCRIPT_SECTIONS]
    # Every field shown is read-only: the log records what happened.
    readonly_fields = [name for _, names in _TRANSCRIPT_SECTIONS for name in names]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TranscriptChangeList

    @admin.display(description="Recipients")
    def recipient_list(self, transcript: Transcript) -> str:
        return ", ".join(transcript.recipients) or "—"

    @admin.display(description="Page")
    def page_link(self, transcript: Transcript) -> SafeString | str:
        return _link_if_web(transcript.page_url)

    @admin.display(description="Being sent")
    def send_claim(self, transcript: Transcript) -> str:
        if transcript.sending_since is None:
            return "No"
        # Imported when needed, as the resend action's service is (see there).
        from chatkit_api.services import transcript_send_abandoned

        since = f"Since {timezone.localtime(transcript.sending_since):%Y-%m-%d %H:%M:%S}"
        if transcript_send_abandoned(transcript):
            return f"{since}, by a process that stopped: the next resend takes it over."
        return since

    @admin.display(description="As staff read it")
    def mail_preview(self, transcript: Transcript) -> SafeString | str:
        if not transcript.body_html:
            return "Not rendered: the conversation could not be read from OpenAI. Resending reads it again."
        # The mail's own HTML, in a sandbox: no scripts, and its styles stay out of the admin.
        return format_html(
            '<iframe sandbox="" referrerpolicy="no-referrer" title="The transcript mail" srcdoc="{}" '
            'style="width:760px;max-width:100%;height:560px;border:1px solid #ccc;background:#fff;">'
            "</iframe>",
            transcript.body_html,
        )

    @admin.display(description="Plain-text part")
    def text_body(self, transcript: Transcript) -> SafeString | str:
        if not transcript.body_text:
            return "—"
        return format_html('<pre style="white-space:pre-wrap;margin:0;">{}</pre>', transcript.body_text)

    @admin.action(description="Resend the selected transcripts", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Transcript]) -> None:
        # The changelist's queryset defers the mail bodies that sending needs.
        transcripts = list(Transcript.objects.filter(pk__in=queryset.values("pk")).order_by("created_at"))
        if len(transcripts) > ADMIN_RESEND_LIMIT:
            self.message_user(
                request,
                f"Select at most {ADMIN_RESEND_LIMIT} transcripts, or use `manage.py resend_transcript`.",
                messages.ERROR,
            )
            return
        # Imported here: the admin loads with Django itself, for every request and command,
        # and the service brings the OpenAI SDK with it.
        from chatkit_api.services import transcript_resend

        sent, busy, failed = 0, [], []
        for transcript in transcripts:
            try:
                transcript_resend(transcript=transcript)
            except TranscriptSendSkipped:
                busy.append(f"#{transcript.id}")
            except ServiceError as exc:
                failed.append(f"#{transcript.id}: {exc.message}")
            else:
                sent += 1
        if sent:
            self.message_user(request, f"{sent} transcript(s) sent again.", messages.SUCCESS)
        if busy:
            self.message_user(
                request,
                f"Already being sent by another resend or request, so not sent again: {', '.join(busy)}. "
                "Their pages show how that send went.",
                messages.WARNING,
            )
        if failed:
            self.message_user(request, "Not sent: " + " ".join(failed), messages.ERROR)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.resend_transcript")

    @admin.action(description="Export the selected transcripts as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Transcript]) -> StreamingHttpResponse:
        columns = [
            "id",
            "created_at",
            "name",
            "email",
            "phone",
            "vehicle",
            "details",
            "mode",
            "page_url",
            "status",
            "delivery_state",
            "recipients",
            "attempts",
            "sent_at",
            "thread_id",
        ]
        rows = Transcript.objects.filter(pk__in=queryset.values("pk")).order_by("-created_at", "-id")
        writer = csv.writer(_Echo())

        def lines() -> Iterator[str]:
            yield writer.writerow(columns)
            values: Iterable[tuple[Any, ...]] = rows.values_list(*columns).iterator()
            for row in values:
                yield writer.writerow([_csv_cell(value) for value in row])

        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        return StreamingHttpResponse(
            lines(),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="transcripts-{stamp}.csv"'},
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A log: read it, resend from it, but never edit what was recorded.
        return False


def _feedback_html(kinds: Iterable[tuple[str, str]]) -> SafeString | str:
    """Each (kind, what to say of it), in the kind's colour as the transcript mail shows it; a
    dash for none."""
    shown = [(feedback_colour(kind), text) for kind, text in kinds]
    return format_html_join(", ", '<strong style="color:{}">{}</strong>', shown) if shown else "—"


def _feedback_given(feedback: ChatKitFeedback) -> tuple[str, str]:
    given_at = timezone.localtime(feedback.given_at).strftime("%Y-%m-%d %H:%M")
    return feedback.kind, f"{feedback.get_kind_display()} ({given_at})"


class ChatKitThreadItemInline(admin.TabularInline):
    model = ChatKitThreadItem
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "type", "item_id", "visitor_feedback")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChatKitThreadItem]:
        # The items' JSON is read once, by the thread's conversation field, not per row.
        return super().get_queryset(request).defer("data").prefetch_related("feedback")

    @admin.display(description="Visitor feedback")
    def visitor_feedback(self, item: ChatKitThreadItem) -> SafeString | str:
        return _feedback_html(map(_feedback_given, item.feedback.all()))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _feedback_on(kind: str | None = None) -> Exists:
    """Whether a visitor gave the thread's items feedback (of `kind`, or of any kind)."""
    given = ChatKitFeedback.objects.filter(item__thread=OuterRef("pk"))
    return Exists(given.filter(kind=kind) if kind else given)


class VisitorFeedbackFilter(admin.SimpleListFilter):
    title = "visitor feedback"
    parameter_name = "feedback"
    NONE = "none"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (FeedbackKind.NEGATIVE, "With thumbs down"),
            (FeedbackKind.POSITIVE, "With thumbs up"),
            (self.NONE, "Without feedback"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == self.NONE:
            return queryset.filter(~_feedback_on())
        if self.value() in FeedbackKind.values:
            return queryset.filter(_feedback_on(self.value()))
        return queryset


class AttachmentFileLink:
    """The `open_file` column of an attachment's rows: a link to its file."""

    @admin.display(description="File")
    def open_file(self, obj: ChatKitAttachment) -> str:
        if not obj.file:
            return "The file stayed with OpenAI (imported from managed ChatKit)."
        url = reverse("admin:chatkit_api_chatkitattachment_file", args=[quote(obj.pk)])
        return format_html('<a href="{}" target="_blank" rel="noopener">Open</a>', url)


class ChatKitAttachmentInline(AttachmentFileLink, admin.TabularInline):
    model = ChatKitAttachment
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "name", "mime_type", "size", "open_file")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChatKitAttachment]:
        return super().get_queryset(request).defer("data")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ChatKitThread)
class ChatKitThreadAdmin(admin.ModelAdmin):
    """Self-hosted conversations: read-only, shown as staff read them in a transcript mail,
    with the visitors' thumbs up and down on the answers."""

    list_display = ["created_at", "title", "visitor_id", "visitor_feedback", "updated_at", "imported_at"]
    search_fields = ["id", "title", "visitor_id"]
    # Threads with a thumbs down to look at; threads `import_managed_threads` brought over
    # from Agent Builder, or not.
    list_filter = [VisitorFeedbackFilter, ("imported_at", admin.EmptyFieldListFilter)]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "id",
        "title",
        "visitor_id",
        "created_at",
        "updated_at",
        "imported_at",
        "visitor_feedback",
        "conversation",
    )
    inlines = [ChatKitAttachmentInline, ChatKitThreadItemInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChatKitThread]:
        return (
            super()
            .get_queryset(request)
            .defer("data")
            .annotate(
                thumbs_down=_feedback_on(FeedbackKind.NEGATIVE), thumbs_up=_feedback_on(FeedbackKind.POSITIVE)
            )
        )

    @admin.display(description="Visitor feedback")
    def visitor_feedback(self, obj: ChatKitThread) -> SafeString | str:
        given = [(FeedbackKind.NEGATIVE, obj.thumbs_down), (FeedbackKind.POSITIVE, obj.thumbs_up)]  # type: ignore[attr-defined]
        return _feedback_html((kind, kind.label) for kind, found in given if found)

    @admin.display(description="Conversation")
    def conversation(self, obj: ChatKitThread) -> str:
        items = obj.items.order_by("created_at", "id").values_list("data", flat=True)
        text = conversation_text(items, feedback=thread_feedback(obj.pk))
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", text)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ChatKitAttachment)
class ChatKitAttachmentAdmin(AttachmentFileLink, admin.ModelAdmin):
    """Visitors' files; deleting a row deletes its file. "Open" leads to a short-lived signed
    URL of the file, for staff who may view attachments only."""

    list_display = ["created_at", "name", "mime_type", "size", "visitor_id", "thread", "open_file"]
    search_fields = ["id", "name", "visitor_id", "thread__id"]
    list_select_related = ["thread"]
    fields = readonly_fields = (
        "id",
        "name",
        "mime_type",
        "size",
        "visitor_id",
        "thread",
        "created_at",
        "open_file",
        "data",
    )

    def get_urls(self) -> list[URLPattern]:
        file_view = path(
            "<path:object_id>/file/",
            self.admin_site.admin_view(self.file_view),
            name="chatkit_api_chatkitattachment_file",
        )
        return [file_view, *super().get_urls()]

    def file_view(self, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
        from chatkit_api.attachments import attachment_staff_url

        attachment = self.get_object(request, unquote(object_id))
        if attachment is None or not attachment.file or not self.has_view_permission(request, attachment):
            raise Http404("No such attachment file.")
        return HttpResponseRedirect(
            attachment_staff_url(attachment, api_url=request.build_absolute_uri(reverse("chatkit")))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
