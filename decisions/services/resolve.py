"""Leaving pending: the one compare-and-set every resolution goes through, and what follows it.

Whoever updates the row wins (a click, the timeout, a cancel); everyone else gets
AlreadyResolved. Audit records are written last in each transaction, in one batch (see
audit_record_many for why).
"""

from datetime import datetime

from django.db import transaction

from audit.services import AuditEntry, audit_record_many
from broker import tracing
from channels import registry as channel_registry
from decisions.models import ApprovalRequest, Decision, Status
from decisions.outcomes import Outcome
from decisions.services.asking import deliveries_enqueue_per_channel
from decisions.services.fingerprints import action_hash
from decisions.waiting import publish_resolution
from notifications.models import Delivery
from notifications.services import deliveries_enqueue


def build_outcome(
    decision: Decision,
    *,
    status: str,
    by: str,
    via: str,
    at: datetime,
    choice: str | None = None,
    text: str | None = None,
    note: str | None = None,
    details: dict | None = None,
    verified: str | None = None,
) -> Outcome:
    """The outcome for `decision`; `details` when an approver edited them, else its own."""
    final_details = decision.details if details is None else details
    return Outcome(
        status=status,
        choice=choice,
        text=text,
        note=note,
        by=by,
        via=via,
        at=at,
        details=final_details,
        action_hash=action_hash(decision.action, final_details),
        verified=verified,
    )


def transition(decision: Decision, *, outcome: Outcome, **conditions) -> bool:
    """The one place a decision leaves pending: compare-and-set, then close the requests
    nobody answered. Returns False if someone else already resolved it."""
    stored = outcome.to_json()
    won = Decision.objects.filter(pk=decision.pk, status=Status.PENDING, **conditions).update(
        status=outcome.status, resolved_at=outcome.at, outcome=stored
    )
    if not won:
        return False
    ApprovalRequest.objects.filter(decision_id=decision.pk, state=ApprovalRequest.State.PENDING).update(
        state=ApprovalRequest.State.CLOSED
    )
    decision.status, decision.resolved_at, decision.outcome = outcome.status, outcome.at, stored
    tracing.record_human_wait(decision)
    return True


def announce(decision: Decision, *, also: list[AuditEntry] = (), asked: list | None = None) -> None:
    """After a transition: the audit records (`also`, then decision.resolved), then what goes
    out — callback, Slack message updates, the long-poll wake-up — all through the outbox or
    on commit. `asked`: the decision's requests when the caller knows them (none, for a
    decision a rule settles as it is created); else they are read."""
    outcome = decision.resolution
    resolved = AuditEntry(
        event="decision.resolved",
        actor=outcome.by,
        decision_id=decision.id,
        channel=outcome.via,
        # The whole outcome as stored: verify_audit holds the decisions table to what was sealed.
        payload={
            "status": decision.status,
            "choice": outcome.choice,
            "note": outcome.note,
            "action_hash": outcome.action_hash,
            "outcome": decision.outcome,
        },
    )
    audit_record_many(organization_id=decision.organization_id, entries=[*also, resolved])
    if decision.callback_url:
        deliveries_enqueue(decision=decision, kind=Delivery.Kind.CALLBACK, purpose=Delivery.Purpose.OUTCOME)
    # Every message that can be edited (Slack's) shows the outcome, without buttons, whoever settled it.
    editing = channel_registry.outcome_editing_names()
    if asked is None:
        editable = list(decision.requests.filter(channel__in=editing))
    else:
        editable = [request for request in asked if request.channel in editing]
    deliveries_enqueue_per_channel(decision, editable, purpose=Delivery.Purpose.UPDATE)
    # Wake long-polling agents once it is committed (robust: Redis down costs latency only).
    decision_id = decision.id  # (a lambda: see notifications.services._publish_on_commit)
    transaction.on_commit(lambda: publish_resolution(decision_id), robust=True)


def reload(decision_id: str) -> Decision:
    return Decision.objects.get(pk=decision_id)
