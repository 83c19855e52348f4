from django.contrib import admin

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only for everybody, superusers included: the database would refuse edits anyway."""

    list_display = ["created_at", "organization", "seq", "event", "actor", "channel", "decision"]
    list_filter = ["organization", "event", "channel"]
    search_fields = ["decision__id", "actor", "event"]
    list_select_related = ["organization"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
