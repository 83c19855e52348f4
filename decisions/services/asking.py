"""Asking approvers: their requests, the deliveries that notify them, and the audit entries."""

from django.utils import timezone

from audit.services import AuditEntry
from decisions.models import ApprovalRequest, Decision
from notifications.models import Delivery
from notifications.services import deliveries_enqueue


def ask(decision: Decision, recipients, *, stage: int, level: int) -> list[ApprovalRequest]:
    """Create the requests and, in the same transaction, the deliveries that notify them."""
    requests = ApprovalRequest.objects.bulk_create(
        ApprovalRequest(
            decision=decision,
            address=r.address,
            channel=r.channel,
            group=r.group,
            stage=stage,
            level=level,
            created_at=decision.created_at if stage == level == 0 else timezone.now(),
        )
        for r in recipients
    )
    deliveries_enqueue_per_channel(decision, requests, purpose=Delivery.Purpose.ASK)
    return requests


def deliveries_enqueue_per_channel(
    decision: Decision, requests: list[ApprovalRequest], *, purpose: str
) -> None:
    """One delivery per request, of its channel's kind (the outbox finds that channel's sender)."""
    for kind in sorted({r.channel for r in requests}):
        deliveries_enqueue(
            decision=decision,
            kind=kind,
            purpose=purpose,
            requests=[r for r in requests if r.channel == kind],
        )


def asked_entries(decision: Decision, requests: list[ApprovalRequest]) -> list[AuditEntry]:
    return [
        AuditEntry(
            event="approver.asked",
            actor="system",
            decision_id=decision.id,
            channel=request.channel,
            payload={
                "address": request.address,
                "group": request.group,
                "stage": request.stage,
                "level": request.level,
            },
        )
        for request in requests
    ]
