"""Asking approvers: their requests, the deliveries that notify them, and the audit entries."""

import dataclasses

from django.utils import timezone

from audit.services import AuditEntry
from broker.compiled_inserts import CompiledInsert
from channels import registry as channel_registry
from decisions.models import ApprovalRequest, Decision
from decisions.selectors import CreateSettings, create_settings
from notifications.models import Delivery
from notifications.services import deliveries_enqueue
from organizations.models import Organization
from portal.delegation import delegated

_requests = CompiledInsert(ApprovalRequest)  # written with every ask: its SQL compiled once


def ask(
    decision: Decision, recipients, *, stage: int, level: int, settings: CreateSettings | None = None
) -> list[ApprovalRequest]:
    """Create the requests and, in the same transaction, the deliveries that notify them. The
    decision's requester is never asked; an approver away is replaced by their delegate
    (portal/delegation.py) unless the organization forbids it. `settings`: the organization's
    create settings when the caller holds them (else they are read)."""
    if settings is None:
        settings = create_settings(Organization.objects.get(pk=decision.organization_id))
    if decision.requested_by:  # the requester is never asked to approve their own decision
        recipients = [r for r in recipients if r.address.lower() != decision.requested_by]
    recipients = _delegated(decision, recipients, settings.delegations, stage)
    requests = _requests.create(
        ApprovalRequest(
            decision=decision,
            address=r.address,
            channel=r.channel,
            group=r.group,
            on_behalf_of=r.on_behalf_of,
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
    """One delivery per request, of its channel's kind (the outbox finds that channel's sender);
    none for a channel that sends nothing (the web portal's inbox shows the ask)."""
    silent = channel_registry.silent_names()
    for kind in sorted({r.channel for r in requests} - set(silent)):
        deliveries_enqueue(
            decision=decision,
            kind=kind,
            purpose=purpose,
            requests=[r for r in requests if r.channel == kind],
        )


def _delegated(decision: Decision, recipients, delegations: dict, stage: int) -> list:
    if not delegations:
        return recipients
    recipients = [
        # Never delegated to the requester: the away approver is asked after all.
        dataclasses.replace(r, address=r.on_behalf_of, on_behalf_of="")
        if r.on_behalf_of and r.address == decision.requested_by
        else r
        for r in delegated(recipients, delegations, timezone.now())
    ]
    if not any(r.on_behalf_of for r in recipients):
        return recipients
    # A delegate may already be asked in this stage (in their own right, or for someone else).
    already = set(
        ApprovalRequest.objects.filter(decision_id=decision.pk, stage=stage).values_list("address", "channel")
    )
    return [r for r in recipients if (r.address, r.channel) not in already]


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
                **({"on_behalf_of": request.on_behalf_of} if request.on_behalf_of else {}),
            },
        )
        for request in requests
    ]
