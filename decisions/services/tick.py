"""The clock: reminders, escalations and deadlines, fired on time by one sweep; and expiry.

Each pending decision carries next_due_at: its next timed step (decisions/schedule.py) or its
deadline, whichever comes first. A beat task runs fire_due() every CLOCK_TICK_SECONDS. It reads
the ids that are due through a partial index (so its cost follows how many are due, not how
many are pending), then handles each in its own short transaction that claims the decision
with FOR NO KEY UPDATE SKIP LOCKED and rechecks next_due_at. A second sweep running at the
same time (two beats by mistake) skips what the first holds, and finds next_due_at moved on
once it is done: nothing fires twice. No Celery countdowns: a broker redelivering an ETA task
after its visibility timeout would fire it twice.
"""

import logging
import time
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from audit.services import AuditEntry, audit_record_many
from decisions.models import ApprovalRequest, Decision, OnTimeout, Status, Via
from decisions.routing import UnknownGroups, expand_addresses
from decisions.services.asking import ask, asked_entries
from decisions.services.resolve import announce, build_outcome, transition
from notifications.models import Delivery
from notifications.services import deliveries_enqueue

logger = logging.getLogger(__name__)

_TIMEOUT_OUTCOMES = {
    OnTimeout.EXPIRE: (Status.EXPIRED, None),
    OnTimeout.DENY: (Status.DENIED, "deny"),
    OnTimeout.APPROVE: (Status.APPROVED, "approve"),
}


@transaction.atomic
def decision_expire(*, decision_id: str) -> Decision | None:
    """Resolve a decision whose time is up, as its on_timeout asks. None (and nothing done)
    if it is not pending or not yet due: safe to call twice or early."""
    decision = Decision.objects.filter(pk=decision_id).first()
    if decision is None or not decision.is_pending:
        return None
    return decision if expire(decision, now=timezone.now()) else None


def expire(decision: Decision, *, now: datetime) -> bool:
    """The timeout's compare-and-set, inside the caller's transaction: False if the decision
    was no longer pending or not yet due (a click got there first)."""
    status, choice = _TIMEOUT_OUTCOMES[decision.on_timeout]
    outcome = build_outcome(decision, status=status, by="system", via=Via.TIMEOUT, at=now, choice=choice)
    if not transition(decision, outcome=outcome, expires_at__lte=now):
        return False
    announce(decision)
    return True


def next_due(decision: Decision) -> datetime:
    if decision.schedule_position < len(decision.schedule):
        step = decision.schedule[decision.schedule_position]
        return min(decision.expires_at, decision.created_at + timedelta(minutes=step["at"]))
    return decision.expires_at


@transaction.atomic
def decision_tick(*, decision_id: str, now: datetime | None = None) -> bool:
    """Fire whatever is due for one decision: its deadline, else every reminder, escalation
    and repeat whose time has come. Returns False when there was nothing to do, or another
    sweep holds it."""
    now = now or timezone.now()
    decision = (
        Decision.objects.select_for_update(no_key=True, skip_locked=True)
        .filter(pk=decision_id, status=Status.PENDING, next_due_at__lte=now)
        .first()
    )
    if decision is None:
        return False
    if decision.expires_at <= now:
        return expire(decision, now=now)

    due = []
    while decision.schedule_position < len(decision.schedule):
        step = decision.schedule[decision.schedule_position]
        if decision.created_at + timedelta(minutes=step["at"]) > now:
            break
        due.append(step)
        decision.schedule_position += 1
    decision.next_due_at = next_due(decision)
    decision.save(update_fields=["schedule_position", "next_due_at"])
    _fire(decision, due)
    return True


def _fire(decision: Decision, steps: list[dict]) -> None:
    """Escalations ask new approvers; reminders and repeats re-notify those who have not
    answered, each approver once however many steps fell due together. Row writes first,
    audit records last, in one batch (see audit_record_many)."""
    escalated: list[tuple[int, list[ApprovalRequest]]] = []
    for step in steps:
        if step["kind"] == "escalate":
            escalated.append((step["level"], _escalate(decision, step["level"])))

    waiting = ApprovalRequest.objects.filter(
        decision_id=decision.pk, stage=decision.current_stage, state=ApprovalRequest.State.PENDING
    )
    just_asked = {request.pk for _, requests in escalated for request in requests}
    to_remind: dict[int, ApprovalRequest] = {}
    for step in steps:
        if step["kind"] == "remind":
            chosen = waiting
        elif step["kind"] == "renotify":
            chosen = waiting.filter(level=step["level"])
        else:
            continue
        to_remind.update((request.pk, request) for request in chosen if request.pk not in just_asked)
    reminded = list(to_remind.values())
    for kind in {request.channel for request in reminded}:
        deliveries_enqueue(
            decision=decision,
            kind=kind,
            purpose=Delivery.Purpose.REMIND,
            requests=[request for request in reminded if request.channel == kind],
        )

    entries: list[AuditEntry] = []
    for level, requests in escalated:
        entries.append(
            AuditEntry(
                event="decision.escalated",
                actor="system",
                decision_id=decision.pk,
                payload={
                    "level": level,
                    "stage": decision.current_stage,
                    "asked": [r.address for r in requests],
                },
            )
        )
        entries += asked_entries(decision, requests)
    if reminded:
        steps_fired = [
            step["kind"] if "level" not in step else f"{step['kind']}:{step['level']}" for step in steps
        ]
        entries.append(
            AuditEntry(
                event="decision.reminded",
                actor="system",
                decision_id=decision.pk,
                payload={"steps": steps_fired, "reminded": sorted(request.address for request in reminded)},
            )
        )
    audit_record_many(organization_id=decision.organization_id, entries=entries)


def _escalate(decision: Decision, level: int) -> list[ApprovalRequest]:
    """Ask escalation level `level` in the current stage; those already asked there stay asked."""
    addresses = decision.escalation[level - 1]["approvers"]
    try:
        recipients = expand_addresses(organization_id=decision.organization_id, addresses=addresses)
    except UnknownGroups as exc:
        # The group was deleted after the decision was made: ask who can still be asked.
        logger.warning("decision %s escalation level %s: unknown groups %s", decision.pk, level, exc.names)
        known = [a for a in addresses if a.removeprefix("group:") not in exc.names]
        recipients = expand_addresses(organization_id=decision.organization_id, addresses=known)
    already = set(
        ApprovalRequest.objects.filter(decision_id=decision.pk, stage=decision.current_stage).values_list(
            "address", "channel"
        )
    )
    fresh = [r for r in recipients if (r.address, r.channel) not in already]
    return ask(decision, fresh, stage=decision.current_stage, level=level)


def fire_due(*, batch: int = 500, budget_seconds: float = 50.0) -> int:
    """The sweep: tick every decision that is due, batch after batch, until none is left, the
    rest is held by another sweep, or the time budget is spent. Returns how many it fired."""
    started = time.monotonic()
    fired = 0
    while True:
        now = timezone.now()
        due_ids = list(
            Decision.objects.filter(status=Status.PENDING, next_due_at__lte=now)
            .order_by("next_due_at")
            .values_list("pk", flat=True)[:batch]
        )
        progressed = 0
        for decision_id in due_ids:
            progressed += decision_tick(decision_id=decision_id, now=now)
        fired += progressed
        if len(due_ids) < batch or not progressed or time.monotonic() - started > budget_seconds:
            return fired
