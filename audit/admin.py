import json

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from audit.chain import ChainProblem
from audit.checkpoints import checkpoint_document
from audit.export import export_response
from audit.models import AuditCheckpoint, AuditEvent
from audit.selectors import checkpoints_for
from audit.verification import audit_problems
from organizations.models import Organization

MAX_PROBLEMS_SHOWN = 100


class ReadOnlyAdmin(admin.ModelAdmin):
    """Read-only for everybody, superusers included: the audit trail is changed by nobody (the
    database refuses edits anyway, see audit/guard.py)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organization", "seq", "event", "actor", "channel", "decision_link"]
    list_filter = ["created_at", "organization", "event", "channel"]
    search_fields = ["=decision__id", "actor"]
    search_help_text = "a decision id (exact), or part of an actor"
    list_select_related = ["organization"]
    # The trail grows without end: no count of the unfiltered table on every page.
    show_full_result_count = False
    fields = readonly_fields = (
        "organization",
        "seq",
        "created_at",
        "decision_link",
        "event",
        "actor",
        "channel",
        "payload_pretty",
        "content_hash",
        "prev_hash",
        "hash",
    )

    def get_queryset(self, request):
        # The event's place in the chain, where the sealer has given it one.
        return super().get_queryset(request).select_related("link")

    @admin.display(description="seq", ordering="link__seq")
    def seq(self, event: AuditEvent):
        return event.link.seq if hasattr(event, "link") else "unsealed"

    @admin.display(description="prev hash")
    def prev_hash(self, event: AuditEvent):
        return event.link.prev_hash if hasattr(event, "link") else "-"

    @admin.display(description="hash")
    def hash(self, event: AuditEvent):
        return event.link.hash if hasattr(event, "link") else "-"

    actions = ["export_selected"]

    def get_urls(self):
        opts = self.model._meta
        name = f"{opts.app_label}_{opts.model_name}"
        return [
            path("export.csv", self.admin_site.admin_view(self.export_view), name=f"{name}_export"),
            path("verify/", self.admin_site.admin_view(self.verify_view), name=f"{name}_verify"),
            *super().get_urls(),
        ]

    def has_export_permission(self, request) -> bool:
        return request.user.has_perm("audit.export_auditevent")

    @admin.display(description="decision", ordering="decision_id")
    def decision_link(self, event: AuditEvent):
        if not event.decision_id:
            return "-"
        url = reverse("admin:decisions_decision_change", args=[event.decision_id])
        return format_html('<a href="{}">{}</a>', url, event.decision_id)

    @admin.display(description="payload")
    def payload_pretty(self, event: AuditEvent):
        try:
            text = json.dumps(json.loads(event.payload), indent=2, sort_keys=True, ensure_ascii=False)
        except ValueError:
            text = event.payload
        return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', text)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_export": self.has_export_permission(request)}
        return super().changelist_view(request, extra_context)

    def _export(self, request, events):
        slugs = dict(Organization.objects.order_by("pk").values_list("pk", "slug"))
        return export_response(request, events, slugs=slugs, name="selection")

    @admin.action(description="Export selected events as CSV", permissions=["export"])
    def export_selected(self, request, queryset):
        return self._export(request, queryset)

    def export_view(self, request):
        """The events the changelist shows with the same filters and search, as CSV."""
        if not (self.has_view_permission(request) and self.has_export_permission(request)):
            raise PermissionDenied
        request.GET = request.GET.copy()
        request.GET.pop("p", None)  # the page shown is irrelevant: every matching event goes
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            self.message_user(request, "Those filters do not apply to the audit trail.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:audit_auditevent_changelist"))
        return self._export(request, changelist.get_queryset(request))

    def verify_view(self, request):
        """Recompute the hash chains (all organizations, or ?organization=<id>) and say whether
        they are intact, as `manage.py verify_audit` does."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        organization = None
        if raw := request.GET.get("organization"):
            organization = Organization.objects.filter(pk=int(raw)).first() if raw.isdigit() else None
            if organization is None:
                self.message_user(request, f"No organization {raw[:40]}.", messages.ERROR)
                return HttpResponseRedirect(reverse("admin:audit_auditevent_verify"))
        organization_id = organization.pk if organization else None
        problems: list[ChainProblem] = []
        found = 0
        for problem in audit_problems(organization_id=organization_id):
            found += 1
            if len(problems) < MAX_PROBLEMS_SHOWN:
                problems.append(problem)
        events = AuditEvent.objects.all()
        organizations = Organization.objects.order_by("slug")
        if organization_id is not None:
            events, organizations = (
                events.filter(organization_id=organization_id),
                organizations.filter(pk=organization_id),
            )
        heads = [
            c
            for o in organizations
            if (c := checkpoints_for(organization_id=o.pk).select_related("organization").first())
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Verify the audit chain",
            "organization": organization,
            "organizations": Organization.objects.order_by("slug"),
            "problems": problems,
            "problem_count": found,
            "event_count": events.count(),
            "heads": heads,
        }
        return TemplateResponse(request, "admin/audit/auditevent/verify.html", context)


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    """Signed statements of each chain's size and head: what the sinks receive and an archive
    is checked against (docs/RETENTION.md)."""

    list_display = ["organization", "size", "head_hash", "sealed_at", "key_id"]
    list_filter = ["organization"]
    show_full_result_count = False
    fields = readonly_fields = ("organization", "size", "head_hash", "sealed_at", "key_id", "document")

    @admin.display(description="signed document")
    def document(self, checkpoint: AuditCheckpoint):
        text = json.dumps(checkpoint_document(checkpoint), indent=2)
        return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', text)
