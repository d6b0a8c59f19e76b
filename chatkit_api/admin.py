from django.contrib import admin
from django.utils.html import format_html

from chatkit_api.models import (
    ChatKitAttachment,
    ChatKitThread,
    ChatKitThreadItem,
    Transcript,
    TranscriptEmail,
)
from chatkit_api.rendering import conversation_text


class TranscriptEmailInline(admin.TabularInline):
    model = TranscriptEmail
    extra = 0
    can_delete = False
    fields = ["created_at", "audience", "to", "reply_to", "status", "ses_message_id", "sent_at", "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Transcript)
class TranscriptAdmin(admin.ModelAdmin):
    """The transcript log: read-only, newest first."""

    list_display = ["created_at", "name", "email", "mode", "status", "attempts"]
    list_filter = ["status", "mode"]
    search_fields = ["name", "email", "phone", "vehicle", "thread_id"]
    date_hierarchy = "created_at"
    inlines = [TranscriptEmailInline]

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False


class ChatKitThreadItemInline(admin.TabularInline):
    model = ChatKitThreadItem
    extra = 0
    can_delete = False
    fields = ["created_at", "type", "item_id"]
    readonly_fields = fields

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        # The items' JSON is read once, by the thread's conversation field, not per row.
        return super().get_queryset(request).defer("data")

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(ChatKitThread)
class ChatKitThreadAdmin(admin.ModelAdmin):
    """Self-hosted conversations: read-only, shown as staff read them in a transcript mail."""

    list_display = ["created_at", "title", "visitor_id", "updated_at"]
    search_fields = ["id", "title", "visitor_id"]
    date_hierarchy = "created_at"
    fields = ["id", "title", "visitor_id", "created_at", "updated_at", "conversation"]
    readonly_fields = fields
    inlines = [ChatKitThreadItemInline]

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).defer("data")

    @admin.display(description="Conversation")
    def conversation(self, obj: ChatKitThread) -> str:
        items = obj.items.order_by("created_at", "id").values_list("data", flat=True)
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", conversation_text(items))

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(ChatKitAttachment)
class ChatKitAttachmentAdmin(admin.ModelAdmin):
    list_display = ["created_at", "name", "mime_type", "visitor_id", "thread"]
    search_fields = ["id", "name", "visitor_id", "thread__id"]
    list_select_related = ["thread"]
    readonly_fields = ["id", "name", "mime_type", "visitor_id", "thread", "created_at", "data"]
    fields = readonly_fields

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
