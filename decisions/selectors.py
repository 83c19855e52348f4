from datetime import datetime

from django.db.models import QuerySet

from broker.errors import NotFound
from decisions.models import Decision


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
