from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from decisions import charts
from decisions.reports import decision_report
from organizations.models import ApiKey, Organization, Scope, WebhookSecret
from organizations.services import api_key_create, api_key_revoke, webhook_secret_rotate


def _percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{fraction:.1%}"


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="a label, e.g. the agent that uses it")
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        initial=[Scope.DECISIONS],
        widget=forms.CheckboxSelectMultiple,
        help_text="decisions: create and read decisions; audit: read and export the audit trail",
    )


class ReminderPointsField(forms.Field):
    """Reminder points typed as percentages of the wait ("50%, 90%") or fractions ("0.5, 0.9"),
    stored as the list of fractions the clock reads. Organization.clean checks the range."""

    widget = forms.TextInput(attrs={"size": 20, "placeholder": "50%, 90%"})

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(
                f"{point * 100:g}%" if isinstance(point, int | float) else str(point) for point in value
            )
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        points = []
        for text in (value or "").replace(";", ",").split(","):
            text = text.strip()
            if not text:
                continue
            try:
                point = float(text.removesuffix("%")) / 100 if text.endswith("%") else float(text)
            except ValueError:
                raise forms.ValidationError(
                    f"{text!r}: give each point as a percentage of the wait (50%) or a fraction (0.5)."
                ) from None
            points.append(round(point, 6))
        return points


class OrganizationForm(forms.ModelForm):
    reminder_points = ReminderPointsField(
        required=False,
        help_text="When approvers who have not answered are reminded, as parts of the wait: "
        "50%, 90% reminds them halfway and near the end. Blank: no reminders.",
    )

    class Meta:
        model = Organization
        fields = ["slug", "name", "default_timeout_minutes", "reminder_points"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    form = OrganizationForm
    list_display = ["slug", "name", "default_timeout_minutes", "reminders", "created_at", "report_link"]
    search_fields = ["slug", "name"]
    actions = ["create_api_key", "rotate_webhook_secret"]

    def get_urls(self):
        return [
            path(
                "<path:object_id>/report/",
                self.admin_site.admin_view(self.report_view),
                name="organizations_organization_report",
            ),
            *super().get_urls(),
        ]

    def has_add_api_key_permission(self, request) -> bool:
        return request.user.has_perm("organizations.add_apikey")

    def has_rotate_permission(self, request) -> bool:
        return request.user.has_perm("organizations.add_webhooksecret")

    @admin.display(description="reminders")
    def reminders(self, organization: Organization):
        return (
            OrganizationForm.base_fields["reminder_points"].prepare_value(organization.reminder_points)
            or "none"
        )

    @admin.display(description="report")
    def report_link(self, organization: Organization):
        url = reverse("admin:organizations_organization_report", args=[organization.pk])
        return format_html('<a href="{}">last 30 days</a>', url)

    @admin.action(
        description="Create an API key for the selected organizations…", permissions=["add_api_key"]
    )
    def create_api_key(self, request, queryset):
        """A form first (name, scopes); on submit, one key per organization, each shown once."""
        form = ApiKeyCreateForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            created = [
                (
                    organization,
                    *api_key_create(
                        organization=organization,
                        scopes=form.cleaned_data["scopes"],
                        name=form.cleaned_data["name"],
                    ),
                )
                for organization in queryset.order_by("slug")
            ]
            # Shown in this response only: a message would keep the key in a cookie or the session.
            context = {
                **self.admin_site.each_context(request),
                "title": "New API keys",
                "opts": self.model._meta,
            }
            response = TemplateResponse(
                request,
                "admin/organizations/organization/api_keys_created.html",
                {**context, "created": created},
            )
            response["Cache-Control"] = "no-store"
            return response
        context = {
            **self.admin_site.each_context(request),
            "title": "Create an API key",
            "opts": self.model._meta,
            "form": form,
            "organizations": queryset.order_by("slug"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/organizations/organization/create_api_key.html", context)

    @admin.action(
        description="Rotate the webhook secret of the selected organizations", permissions=["rotate"]
    )
    def rotate_webhook_secret(self, request, queryset):
        for organization in queryset.order_by("slug"):
            webhook_secret_rotate(organization=organization)
        self.message_user(
            request,
            f"{queryset.count()} webhook secret(s) rotated; the old ones keep signing for 24 hours. "
            "See them under Webhook secrets.",
            messages.SUCCESS,
        )

    def report_view(self, request, object_id: str):
        """Decisions per day by outcome, answer times per approver and channel, escalation
        and expiry rates, for the last 30 days. Needs permission to view decisions."""
        if not request.user.has_perm("decisions.view_decision"):
            raise PermissionDenied
        organization = (
            Organization.objects.filter(pk=unquote(object_id)).first() if object_id.isdigit() else None
        )
        if organization is None:
            raise Http404("No such organization.")
        report = decision_report(organization_id=organization.pk)
        period = f"{report.days[0].isoformat()} to {report.days[-1].isoformat()} (UTC)"
        rates = [
            ("escalated", report.escalation_rate, f"{report.escalated} of {report.total}"),
            ("ran out of time", report.expiry_rate, f"{report.timed_out} of {report.total}"),
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Report: {organization.name}",
            "opts": self.model._meta,
            "organization": organization,
            "can_view_organization": self.has_view_permission(request, organization),
            "report": report,
            "period": period,
            "daily_chart": charts.stacked_day_bars(
                report.days, report.status_series(), f"Decisions per day by outcome, {period}"
            ),
            "approver_chart": charts.range_bars(
                [(r.label, r.median_seconds, r.p90_seconds, r.answers) for r in report.by_approver[:25]],
                "Time to answer per approver",
            ),
            "channel_chart": charts.range_bars(
                [(r.label, r.median_seconds, r.p90_seconds, r.answers) for r in report.by_channel],
                "Time to answer per channel",
            ),
            "rate_chart": charts.rate_bars(rates, "Escalation and expiry rates"),
            "escalation_percent": _percent(report.escalation_rate),
            "expiry_percent": _percent(report.expiry_rate),
            "approver_rows": [
                (
                    r.label,
                    r.answers,
                    charts.human_duration(r.median_seconds),
                    charts.human_duration(r.p90_seconds),
                )
                for r in report.by_approver
            ],
            "channel_rows": [
                (
                    r.label,
                    r.answers,
                    charts.human_duration(r.median_seconds),
                    charts.human_duration(r.p90_seconds),
                )
                for r in report.by_channel
            ],
        }
        return TemplateResponse(request, "admin/organizations/organization/report.html", context)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "organization", "name", "scopes", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["organization", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "organization__slug"]
    list_select_related = ["organization"]
    fields = ["organization", "name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    # A key's scopes are part of what it was issued as: for other scopes, create another key.
    readonly_fields = ["organization", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False  # created by the organization's "Create an API key" action, shown once

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: the key's prefix stays traceable in the audit trail

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        active = queryset.filter(revoked_at__isnull=True)
        count = active.count()
        for key in active:
            api_key_revoke(key=key)
        self.message_user(request, f"{count} key(s) revoked; they stop working at once.", messages.SUCCESS)


@admin.register(WebhookSecret)
class WebhookSecretAdmin(admin.ModelAdmin):
    """Callback signing secrets. Rotate them with the organization's action (or
    `manage.py webhook_secret --rotate`); the secret itself is on each row's page."""

    list_display = ["organization", "masked_secret", "created_at", "retired_at"]
    list_filter = ["organization"]
    fields = readonly_fields = ("organization", "secret", "created_at", "retired_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="secret")
    def masked_secret(self, secret: WebhookSecret) -> str:
        return f"{secret.secret[:10]}…"
