from django.contrib import admin

from notifications.models import Delivery


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "purpose", "decision", "status", "attempts", "next_attempt_at", "sent_at"]
    list_filter = ["kind", "status", "purpose"]
    search_fields = ["decision__id"]
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
