from django.contrib import admin

from chatkit_api.models import Transcript, TranscriptEmail


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
