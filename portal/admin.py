from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import F

from broker.errors import InvalidInput
from organizations.models import Organization
from portal import services
from portal.models import Delegation, OrganizationPortalSettings


class DelegationForm(admin.ModelAdmin.form):
    def clean(self):
        data = super().clean()
        # The service's checks (cycles, dates, the delegate's address), shown on the form.
        if data.get("address") and data.get("delegate") and data.get("until"):
            try:
                services.delegation_check(
                    address=data["address"], delegate=data["delegate"], until=data["until"]
                )
            except InvalidInput as exc:
                raise ValidationError(exc.message) from None
        return data


@admin.register(Delegation)
class DelegationAdmin(admin.ModelAdmin):
    """An admin sets or ends an approver's delegation, through the same service as the portal."""

    form = DelegationForm
    list_display = ["address", "delegate", "until", "set_by"]
    search_fields = ["address", "delegate"]
    fields = ["address", "delegate", "until"]

    def save_model(self, request, obj, form, change):
        saved = services.delegation_set(
            address=obj.address,
            delegate=obj.delegate,
            until=obj.until,
            set_by=f"admin:{request.user.username}",
        )
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        services.delegation_clear(address=obj.address, set_by=f"admin:{request.user.username}")

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(OrganizationPortalSettings)
class OrganizationPortalSettingsAdmin(admin.ModelAdmin):
    list_display = ["organization", "allow_delegation"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # The organization's cached create settings hold its delegations: re-read them.
        Organization.objects.filter(pk=obj.organization_id).update(settings_version=F("settings_version") + 1)
