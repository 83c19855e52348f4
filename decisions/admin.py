from django.contrib import admin

from decisions.models import ApprovalRequest, ApproverGroup, Decision, Policy


class ApprovalRequestInline(admin.TabularInline):
    model = ApprovalRequest
    extra = 0
    can_delete = False
    fields = [
        "address",
        "channel",
        "group",
        "stage",
        "level",
        "state",
        "notified_at",
        "answered_at",
        "choice",
        "note",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "organization",
        "action",
        "status",
        "urgency",
        "created_at",
        "expires_at",
        "resolved_at",
    ]
    list_filter = ["status", "urgency", "organization", "created_at"]
    search_fields = ["id", "action", "requests__address"]
    inlines = [ApprovalRequestInline]

    def has_add_permission(self, request) -> bool:
        return False  # decisions come from agents through the API

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # status changes only through the services, which audit them

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the audit trail refers to it


@admin.register(ApproverGroup)
class ApproverGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "members"]
    list_filter = ["organization"]
    search_fields = ["name"]


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "position", "enabled", "action", "override"]
    list_editable = ["position", "enabled"]
    list_filter = ["organization", "action", "enabled"]
    search_fields = ["name"]
