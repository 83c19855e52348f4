from datetime import datetime

from django.db.models import QuerySet

from broker.errors import NotFound
from decisions.links import LinkClaim
from decisions.models import ApprovalRequest, Decision, ResponseType


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
