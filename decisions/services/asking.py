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
    for kind in {r.channel for r in requests}:
        deliveries_enqueue(
            decision=decision,
            kind=kind,
            purpose=Delivery.Purpose.ASK,
            requests=[r for r in requests if r.channel == kind],
        )
    return requests


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
