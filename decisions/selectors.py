from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from broker.errors import NotFound
from decisions.links import LinkClaim
from decisions.models import ApprovalRequest, Decision, Policy, ResponseType
from decisions.routing import dm_email_approvers_get
from organizations.models import Organization
from portal.delegation import delegation_allowed_load, delegations_load


def decision_get(*, organization_id: int, decision_id: str) -> Decision:
    """The organization's decision. Another organization's is NotFound, exactly like a
    decision that does not exist: its existence is not revealed."""
    decision = (
        Decision.objects.filter(organization_id=organization_id, pk=decision_id)
        .prefetch_related("requests")
        .first()
    )
    if decision is None:
        raise NotFound(f"No decision {decision_id}.")
    return decision


def decision_list(
    *,
    organization_id: int,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Decision]:
    decisions = Decision.objects.filter(organization_id=organization_id).prefetch_related("requests")
    if status:
        decisions = decisions.filter(status=status)
    if created_after:
        decisions = decisions.filter(created_at__gt=created_after)
    if created_before:
        decisions = decisions.filter(created_at__lt=created_before)
    return decisions


def approval_request_for_link(claim: LinkClaim) -> ApprovalRequest | None:
    """The request a link names, if it exists, belongs to the decision the link names, and
    the link's choice is one the decision offers. Anything else is a link we did not make."""
    request = (
        ApprovalRequest.objects.select_related("decision__organization")
        .filter(pk=claim.request_id, decision_id=claim.decision_id)
        .first()
    )
    if request is None:
        return None
    decision = request.decision
    offered = [""] if decision.response_type == ResponseType.TEXT else decision.options
    return request if claim.choice in offered else None


@dataclass(frozen=True)
class CreateSettings:
    rules: tuple[Policy, ...]  # enabled, in the order they are tried; shared: do not change them
    dm_email_approvers: bool
    # Approvers away: address → (delegate, until), every delegation not yet ended; empty when
    # the organization forbids delegation. (Global, but kept with each organization's settings:
    # a delegation change raises every organization's settings_version.)
    delegations: dict


# organization id → ((created_at, settings_version), its settings), for this process.
_create_settings: dict[int, tuple[tuple, CreateSettings]] = {}


def create_settings(organization: Organization) -> CreateSettings:
    """What a create reads of the organization's settings: its enabled policy rules and its
    Slack `dm_email_approvers`. Kept in memory while the organization row, as the caller loaded
    it, carries the same settings_version: triggers raise it with every write to the rules or
    the Slack settings (however made: admin, ORM, SQL), so each request sees what was committed
    before its API key was read, in every process. (created_at tells apart organizations that
    reuse an id, as SQLite does after a rollback.)"""
    stamp = (organization.created_at, organization.settings_version)
    held = _create_settings.get(organization.pk)
    if held is not None and held[0] == stamp:
        return held[1]
    settings = CreateSettings(
        rules=tuple(
            Policy.objects.filter(organization_id=organization.pk, enabled=True).order_by("position", "pk")
        ),
        dm_email_approvers=dm_email_approvers_get(organization.pk),
        delegations=delegations_load() if delegation_allowed_load(organization.pk) else {},
    )
    _create_settings[organization.pk] = (stamp, settings)
    return settings
