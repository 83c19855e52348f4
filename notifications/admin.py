from django.contrib import admin

from notifications.models import Delivery, DeliveryAttempt
from notifications.services import delivery_redeliver


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "started_at", "duration_ms", "ok", "status_code", "error", "response_snippet"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "purpose", "decision", "status", "attempts", "next_attempt_at", "sent_at"]
    list_filter = ["kind", "status", "purpose", "organization"]
    search_fields = ["decision__id", "request__address"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    inlines = [DeliveryAttemptInline]
    actions = ["redeliver"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Redeliver selected (same webhook-id, fresh attempts)")
    def redeliver(self, request, queryset):
        for delivery in queryset:
            delivery_redeliver(delivery=delivery, actor=f"admin:{request.user.get_username()}")
        self.message_user(request, f"{queryset.count()} delivery(ies) queued again.")
