from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from audit.decision_export import decision_rows_csv
from audit.export import csv_download
from audit.models import AuditEvent
from decisions.admin_display import (
    details_table,
    escalation_list,
    minutes_list,
    outcome_table,
    payload_lines,
    policy_link,
    stages_list,
    when_short,
)
from decisions.admin_forms import ApproverGroupForm, PolicyForm, PolicyPreviewForm
from decisions.models import ApprovalRequest, ApproverGroup, Decision, Policy, Status, Via
from decisions.policies import condition_text
from decisions.policy_preview import policy_preview
from decisions.services import AlreadyResolved, decision_cancel
from notifications.models import Delivery
from notifications.services import delivery_redeliver
from organizations.models import Organization


def admin_actor(request) -> str:
    """How an admin appears in outcomes and in the audit trail."""
    return f"admin:{request.user.get_username()}"


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ApprovalRequestInline(ReadOnlyInline):
    """Who was asked, over which channel, at which stage and escalation level, and when."""

    model = ApprovalRequest
    verbose_name_plural = "requests (who was asked)"
    fields = ["address", "channel", "group", "stage", "level", "state", "created_at", "notified_at"]
    readonly_fields = fields
    ordering = ["stage", "level", "pk"]


class AnswerInline(ReadOnlyInline):
    """What each approver who answered decided, when, and how."""

    model = ApprovalRequest
    verbose_name = "answer"
    verbose_name_plural = "answers"
    fields = [
        "address",
        "answered_at",
        "answered_via",
        "answered_by",
        "choice",
        "text",
        "note",
        "edited_details_table",
    ]
    readonly_fields = fields
    ordering = ["answered_at", "pk"]

    @admin.display(description="edited details")
    def edited_details_table(self, request: ApprovalRequest):
        return details_table(request.edited_details) if request.edited_details is not None else "not edited"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(answered_at__isnull=False)


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = ["kind", "purpose", "request", "status", "attempts", "next_attempt_at", "sent_at", "last_error"]
    readonly_fields = fields
    ordering = ["created_at", "pk"]


class AuditEventInline(ReadOnlyInline):
    model = AuditEvent
    verbose_name_plural = "audit trail"
    fields = ["seq", "created_at", "event", "actor", "channel", "payload_lines"]
    readonly_fields = fields
    ordering = ["pk"]  # the order they were written in; the sealer keeps it

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("link")

    @admin.display(description="seq")
    def seq(self, event: AuditEvent):
        return event.link.seq if hasattr(event, "link") else "unsealed"

    @admin.display(description="payload")
    def payload_lines(self, event: AuditEvent):
        return payload_lines(event.payload)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    # Short columns that stay on one line, and the action, which wraps (decisions/admin.css).
    list_display = ["id", "action", "status", "urgency", "organization", "created", "resolved"]
    list_filter = ["status", "urgency", "created_at", "resolved_at", "organization"]
    search_fields = ["=id", "action", "requests__address"]
    search_help_text = "a decision id (exact), part of the action, or an approver's address"
    list_select_related = ["organization"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    fieldsets = [
        (None, {"fields": ["id", "organization", "status", "action", "context", "details_table", "urgency"]}),
        ("Outcome", {"fields": ["outcome_table", "resolved_at"]}),
        (
            "Routing",
            {
                "fields": [
                    "policy_link",
                    "stages_list",
                    "escalation_list",
                    "reminders_list",
                    "on_timeout",
                    "created_at",
                    "expires_at",
                ]
            },
        ),
        (
            "As the agent sent it",
            {
                "fields": [
                    "options_list",
                    "response_type",
                    "allow_edit",
                    "callback_url",
                    "metadata_table",
                    "action_hash",
                ],
                "classes": ["collapse"],
            },
        ),
    ]
    # A decision is the agent's and its approvers': the admin reads it, never edits it.
    readonly_fields = [field for _, section in fieldsets for field in section["fields"]]
    inlines = [ApprovalRequestInline, AnswerInline, DeliveryInline, AuditEventInline]
    actions = ["cancel", "redeliver_callback"]

    class Media:
        css = {"all": ["decisions/admin.css"]}

    def get_list_display(self, request):
        if Organization.objects.count() > 1:
            return self.list_display
        return [column for column in self.list_display if column != "organization"]  # room for the rest

    @admin.display(description="created", ordering="created_at")
    def created(self, decision: Decision):
        return when_short(decision.created_at)

    @admin.display(description="resolved", ordering="resolved_at")
    def resolved(self, decision: Decision):
        if decision.resolved_at is None:
            return format_html('<span class="cs-quiet">expires {}</span>', when_short(decision.expires_at))
        return when_short(decision.resolved_at)

    @admin.display(description="details")
    def details_table(self, decision: Decision):
        return details_table(decision.details)

    @admin.display(description="outcome")
    def outcome_table(self, decision: Decision):
        return outcome_table(decision.outcome)

    @admin.display(description="policy rule")
    def policy_link(self, decision: Decision):
        return policy_link(decision.policy, decision.organization_id)

    @admin.display(description="stages")
    def stages_list(self, decision: Decision):
        return stages_list(decision.stages, decision.current_stage)

    @admin.display(description="escalation")
    def escalation_list(self, decision: Decision):
        return escalation_list(decision.escalation, decision.escalation_repeat)

    @admin.display(description="reminders")
    def reminders_list(self, decision: Decision):
        return minutes_list(decision.reminders)

    @admin.display(description="options")
    def options_list(self, decision: Decision):
        return ", ".join(decision.options)

    @admin.display(description="metadata")
    def metadata_table(self, decision: Decision):
        return details_table(decision.metadata)

    def has_add_permission(self, request) -> bool:
        return False  # decisions come from agents through the API

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # status changes only through the services, which audit them

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the audit trail refers to it

    # The actions change state through the services; they need the model's change
    # permission even though the form itself is read-only for everybody.
    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("decisions.change_decision")

    def has_redeliver_permission(self, request) -> bool:
        return request.user.has_perm("notifications.change_delivery")

    def changelist_view(self, request, extra_context=None):
        reports = [
            (organization.slug, reverse("admin:organizations_organization_report", args=[organization.pk]))
            for organization in Organization.objects.order_by("slug")
        ]
        can_export = request.user.has_perm("audit.export_auditevent")
        extra = {"reports": reports, "can_export": can_export}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_view)
        return [path("export.csv", export, name="decisions_decision_export"), *super().get_urls()]

    def export_view(self, request):
        """The decisions the changelist shows, with its filters and search, one row each
        (audit/decision_export.py). Who may export the audit trail may export this."""
        if not (self.has_view_permission(request) and request.user.has_perm("audit.export_auditevent")):
            raise PermissionDenied
        request.GET = request.GET.copy()
        request.GET.pop("p", None)  # every matching decision, not the page shown
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            self.message_user(request, "Those filters do not apply to decisions.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:decisions_decision_changelist"))
        decisions = changelist.get_queryset(request)
        return csv_download(request, decision_rows_csv(decisions), filename="decisions")

    @admin.action(description="Cancel selected pending decisions", permissions=["cancel"])
    def cancel(self, request, queryset):
        pending = list(queryset.filter(status=Status.PENDING))
        cancelled, skipped = 0, queryset.count() - len(pending)
        for decision in pending:
            try:
                decision_cancel(decision=decision, actor=admin_actor(request), via=Via.WEB)
                cancelled += 1
            except AlreadyResolved:
                skipped += 1  # resolved meanwhile: a click or the timeout won
        self.message_user(request, f"{cancelled} decision(s) cancelled.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"{skipped} decision(s) were no longer pending and were left as they are.",
                messages.WARNING,
            )

    @admin.action(description="Redeliver the callback of selected decisions", permissions=["redeliver"])
    def redeliver_callback(self, request, queryset):
        queued, without = 0, 0
        for decision in queryset:
            delivery = (
                Delivery.objects.filter(decision=decision, kind=Delivery.Kind.CALLBACK)
                .order_by("-created_at", "-pk")
                .first()
            )
            if delivery is None:
                without += 1  # no callback_url, or not resolved yet
                continue
            delivery_redeliver(delivery=delivery, actor=admin_actor(request))
            queued += 1
        self.message_user(request, f"{queued} callback(s) queued again.", messages.SUCCESS)
        if without:
            self.message_user(
                request,
                f"{without} decision(s) have no callback to redeliver (no callback_url, or still pending).",
                messages.WARNING,
            )


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    """Every request to every approver: read-only, like the decisions they belong to."""

    list_display = [
        "decision_link",
        "address",
        "channel",
        "stage",
        "level",
        "state",
        "created_at",
        "answered_at",
        "choice",
    ]
    list_filter = ["state", "channel", "answered_via", "created_at"]
    search_fields = ["address", "=decision__id"]
    list_select_related = ["decision"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ApprovalRequest._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="decision", ordering="decision_id")
    def decision_link(self, request: ApprovalRequest):
        url = reverse("admin:decisions_decision_change", args=[request.decision_id])
        return format_html('<a href="{}">{}</a>', url, request.decision_id)


@admin.register(ApproverGroup)
class ApproverGroupAdmin(admin.ModelAdmin):
    """Who is asked: `group:<name>` in a policy or an agent's request asks every member.
    Not to be confused with Django's Groups (Authentication), which say who may use this admin."""

    form = ApproverGroupForm
    list_display = ["name", "organization", "member_list"]
    list_filter = ["organization"]
    search_fields = ["name", "members"]

    @admin.display(description="members")
    def member_list(self, group: ApproverGroup):
        return ", ".join(group.members)


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    """Rules are validated on save (Policy.clean): conditions are well-formed data and the
    routing passes the same checks as an agent's request."""

    form = PolicyForm
    fieldsets = [
        (None, {"fields": ["organization", "name", "position", "enabled"]}),
        ("When", {"fields": ["conditions"]}),
        ("Then", {"fields": ["action"]}),
        (
            "Routing (for “route to approvers”)",
            {
                "fields": [
                    "approvers",
                    "quorum",
                    "stages",
                    "timeout_minutes",
                    "urgency",
                    "escalation",
                    "override",
                ],
                "description": "Fills in what the agent left out; with “override”, replaces what it sent.",
            },
        ),
    ]
    list_display = ["name", "organization", "position", "enabled", "when", "action", "override"]
    list_editable = ["position", "enabled"]
    list_filter = ["organization", "action", "enabled"]
    search_fields = ["name"]
    ordering = ["organization", "position", "pk"]

    @admin.display(description="when")
    def when(self, policy: Policy):
        if not policy.conditions:
            return "always"
        return " and ".join(condition_text(c) for c in policy.conditions if isinstance(c, dict))

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [path("preview/", preview, name="decisions_policy_preview"), *super().get_urls()]

    def preview_view(self, request):
        """Which rule would match a decision, and the routing the create would apply, without
        creating anything (decisions/policy_preview.py). Who may view the rules may use it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        organizations = Organization.objects.order_by("slug")
        form = PolicyPreviewForm(request.GET or None, organizations=organizations)
        preview = None
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            preview = policy_preview(
                organization=data["organization"],
                action=data["action"],
                urgency=data["urgency"],
                details=data["details"],
                approvers=data["approvers"] or None,
                timeout_minutes=data["timeout_minutes"],
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Which rule would match this decision?",
            "opts": self.model._meta,
            "form": form,
            "preview": preview,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/decisions/policy/preview.html", context)
