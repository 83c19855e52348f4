"""Cancelling a pending decision."""

from django.db import transaction
from django.utils import timezone

from decisions.models import Decision, Status, Via
from decisions.services.errors import AlreadyResolved
from decisions.services.resolve import announce, build_outcome, reload, transition


@transaction.atomic
def decision_cancel(*, decision: Decision, actor: str, via: str = Via.API) -> Decision:
    """pending → cancelled, by `actor` over `via` (the API; an admin on the web). Raises
    AlreadyResolved if it is not pending."""
    now = timezone.now()
    outcome = build_outcome(decision, status=Status.CANCELLED, by=actor, via=via, at=now)
    if not transition(decision, outcome=outcome):
        raise AlreadyResolved(reload(decision.pk))
    announce(decision)
    return decision
