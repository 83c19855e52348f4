"""Writes for the outbox: create deliveries with their change, claim, and settle them."""

import logging
import random
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from broker import tracing
from broker.canonical import canonical_json
from broker.compiled_inserts import CompiledInsert
from broker.compiled_reads import CompiledRead
from notifications.models import Delivery, DeliveryAttempt
from notifications.senders import (
    AttemptReport,
    PermanentFailure,
    RetryLater,
    run_on_sent,
    sender_for,
    skip_reason,
)

logger = logging.getLogger(__name__)

# Seconds to wait after the 1st, 2nd, … failed attempt: together more than 24 hours.
RETRY_DELAYS = [5, 60, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1

_CALLBACK_EVENTS = ("callback.delivered", "callback.failed")
# Every other kind is a channel's message to an approver (email, Slack, Teams, …).
_NOTIFICATION_EVENTS = ("notification.sent", "notification.failed")


def _events(kind: str) -> tuple[str, str]:
    """(event when sent, event when given up) for a delivery of this kind."""
    return _CALLBACK_EVENTS if kind == Delivery.Kind.CALLBACK else _NOTIFICATION_EVENTS


def retry_delay(attempts: int) -> timedelta:
    """Capped exponential backoff with ±10% jitter, so retries of many rows spread out."""
    base = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
    return timedelta(seconds=base * random.uniform(0.9, 1.1))


_deliveries = CompiledInsert(Delivery)  # written with every ask: its SQL compiled once


def _publish(delivery_ids: list[int]) -> None:
    """Hand the deliveries to the workers as one task message: a publish costs the web process
    about half a millisecond of CPU whatever it carries, and a transaction often writes several
    (an email and a Slack post per approver). The worker splits it up again (tasks.deliver)."""
    from notifications.tasks import deliver

    if delivery_ids:
        deliver.delay(*delivery_ids)


def _publish_on_commit(delivery_ids: list[int]) -> None:
    # robust: a broker outage must not turn a committed change into an error for the caller;
    # the outbox sweep publishes whatever this could not.
    # A lambda, not functools.partial: Django logs a failing robust hook by its __qualname__,
    # which a partial lacks, and the logging itself then raised (a 500 after commit).
    transaction.on_commit(lambda: _publish(delivery_ids), robust=True)


def deliveries_enqueue(*, decision, kind: str, purpose: str, requests=(None,)) -> list[Delivery]:
    """Create one delivery per request (or one for the decision) inside the caller's
    transaction, and publish their tasks once it commits. Nothing is published on rollback."""
    now = timezone.now()
    deliveries = _deliveries.create(
        Delivery(
            organization_id=decision.organization_id,
            decision=decision,
            request=request,
            kind=kind,
            purpose=purpose,
            created_at=now,
            next_attempt_at=now,
            enqueued_at=now,
        )
        for request in requests
    )
    _publish_on_commit([d.pk for d in deliveries])
    return deliveries


@transaction.atomic
def delivery_redeliver(*, delivery: Delivery, actor: str) -> None:
    """Send a delivery again (an admin's "redeliver"), whatever became of it: a fresh round of
    attempts with the same webhook-id, so a receiver that already has it can tell."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.PENDING, attempts=0, next_attempt_at=now, enqueued_at=now, lease_until=None
    )
    audit_record(
        organization_id=delivery.organization_id,
        decision_id=delivery.decision_id,
        event="callback.redelivery_requested"
        if delivery.kind == Delivery.Kind.CALLBACK
        else "notification.redelivery_requested",
        actor=actor,
        channel=delivery.kind,
        payload={"delivery_id": delivery.pk, "previous_status": delivery.status},
    )
    _publish_on_commit([delivery.pk])


# Read once per attempt, four tables joined: compiled once per process (broker/compiled_reads.py).
_claimed = CompiledRead(
    Delivery,
    lambda pk: Delivery.objects.select_related("decision", "request", "organization").filter(pk=pk),
    -1,  # a placeholder for the id
)


def delivery_claim(*, delivery_id: int) -> Delivery | None:
    """Take a due delivery for one attempt (compare-and-set on its lease). None if it is gone,
    settled, not yet due, or held by another worker whose lease has not run out."""
    now = timezone.now()
    lease_free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    won = Delivery.objects.filter(
        lease_free, pk=delivery_id, status=Delivery.Status.PENDING, next_attempt_at__lte=now
    ).update(lease_until=now + settings.OUTBOX_LEASE, attempts=F("attempts") + 1)
    if not won:
        return None
    delivery = _claimed.one(delivery_id)
    if delivery is None:
        return None  # deleted since (its decision was), between the claim and this read
    # One decision and one organization for the whole attempt: a channel reads them through
    # the request (request.decision.organization), which would otherwise query each again.
    delivery.decision.organization = delivery.organization
    if delivery.request is not None:
        delivery.request.decision = delivery.decision
    return delivery


def _audit_payload(delivery: Delivery, **extra) -> dict:
    return {
        "delivery_id": delivery.pk,
        "kind": delivery.kind,
        "purpose": delivery.purpose,
        "address": delivery.request.address if delivery.request else "",
        "attempts": delivery.attempts,
        **extra,
    }


@transaction.atomic
def delivery_succeed(*, delivery: Delivery, report: AttemptReport | None = None) -> None:
    """Mark a delivery sent and, in the same transaction, hand the sender's report (its facts)
    to the on_sent hooks, so what it learned is stored with the status change or not at all."""
    now = timezone.now()
    changes = {"status": Delivery.Status.SENT, "sent_at": now, "lease_until": None, "last_error": ""}
    if report and report.provider_message_id:
        changes["provider_message_id"] = report.provider_message_id
    won = Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING).update(**changes)
    if not won:
        return
    delivery.status, delivery.sent_at = Delivery.Status.SENT, now
    run_on_sent(delivery, report)
    audit_record(
        organization_id=delivery.organization_id,
        decision_id=delivery.decision_id,
        event=_events(delivery.kind)[0],
        actor="system",
        channel=delivery.kind,
        payload=_audit_payload(delivery),
    )


@transaction.atomic
def delivery_fail(*, delivery: Delivery, reason: str) -> None:
    """Give up on a delivery for good, with the reason in the row and the audit trail."""
    _settle_unsent(delivery, status=Delivery.Status.FAILED, event=_events(delivery.kind)[1], reason=reason)


@transaction.atomic
def delivery_skip(*, delivery: Delivery, reason: str) -> None:
    """Hold a delivery back on purpose (its decision no longer needs it); audited as skipped,
    so the trail does not show a deliberate choice as a failure."""
    _settle_unsent(delivery, status=Delivery.Status.SKIPPED, event="notification.skipped", reason=reason)


def _settle_unsent(delivery: Delivery, *, status: str, event: str, reason: str) -> None:
    won = Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING).update(
        status=status, lease_until=None, last_error=reason[:2000]
    )
    if won:
        audit_record(
            organization_id=delivery.organization_id,
            decision_id=delivery.decision_id,
            event=event,
            actor="system",
            channel=delivery.kind,
            payload=_audit_payload(delivery, reason=reason[:500]),
        )


def delivery_retry(*, delivery: Delivery, reason: str, retry_after: float | None = None) -> None:
    """Schedule the next attempt (the sweep enqueues it when due), or give up after the last."""
    if delivery.attempts >= MAX_ATTEMPTS:
        delivery_fail(delivery=delivery, reason=f"gave up after {delivery.attempts} attempts: {reason}")
        return
    delay = timedelta(seconds=retry_after) if retry_after else retry_delay(delivery.attempts)
    Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING).update(
        next_attempt_at=timezone.now() + delay, lease_until=None, last_error=reason[:2000]
    )


def delivery_attempt(*, delivery_id: int) -> None:
    """One attempt at one delivery: claim it, send it, record the result. Safe to run twice
    for the same id (a duplicate message or a sweep re-enqueue): the claim lets one through."""
    delivery = delivery_claim(delivery_id=delivery_id)
    if delivery is None:
        return
    if reason := skip_reason(delivery):
        delivery_skip(delivery=delivery, reason=reason)
        return
    sender = sender_for(delivery.kind)
    if sender is None:
        # Retried on the usual schedule rather than failed at once: it goes out if a sender
        # for its kind is configured within the retry window (over 24 hours).
        delivery_retry(delivery=delivery, reason=f"no sender for {delivery.kind} deliveries is configured")
        return
    started_at, clock = timezone.now(), time.monotonic()
    try:
        # A span of the decision's trace; a callback's `traceparent` names it (broker/tracing.py).
        with tracing.in_decision_trace(delivery.decision, f"{delivery.kind}.send", _attributes(delivery)):
            report = sender(delivery)
    except PermanentFailure as exc:
        _log_attempt(delivery, started_at, clock, ok=False, error=str(exc), report=exc.report)
        delivery_fail(delivery=delivery, reason=str(exc))
    except RetryLater as exc:
        _log_attempt(delivery, started_at, clock, ok=False, error=str(exc), report=exc.report)
        delivery_retry(delivery=delivery, reason=str(exc), retry_after=exc.retry_after)
    except Exception as exc:
        logger.warning("delivery %s attempt %s failed", delivery.pk, delivery.attempts, exc_info=True)
        reason = f"{type(exc).__name__}: {exc}"
        _log_attempt(delivery, started_at, clock, ok=False, error=reason, report=None)
        delivery_retry(delivery=delivery, reason=reason)
    else:
        _log_attempt(delivery, started_at, clock, ok=True, error="", report=report)
        delivery_succeed(delivery=delivery, report=report)


def _attributes(delivery: Delivery) -> dict:
    """The delivery's attempt, for its span."""
    return {
        "countersign.delivery.id": delivery.pk,
        "countersign.delivery.purpose": delivery.purpose,
        "countersign.delivery.attempt": delivery.attempts,
    }


def _log_attempt(delivery: Delivery, started_at, clock: float, *, ok: bool, error: str, report) -> None:
    report = report or AttemptReport()
    DeliveryAttempt.objects.create(
        delivery=delivery,
        # Counted from the log, not delivery.attempts: a redelivery restarts that count.
        number=DeliveryAttempt.objects.filter(delivery=delivery).count() + 1,
        started_at=started_at,
        duration_ms=round((time.monotonic() - clock) * 1000),
        ok=ok,
        status_code=report.status_code,
        error=error[:2000],
        response_snippet=report.response_snippet[:2000],
    )


def deliveries_requeue_due(*, limit: int = 500) -> int:
    """The outbox sweep: publish again every due delivery whose task never ran — its publish
    failed (broker down), its message was lost, or its worker died and the lease ran out.
    Publishing twice is harmless: the claim lets one attempt through."""
    now = timezone.now()
    lost = Q(enqueued_at__lt=F("next_attempt_at")) | Q(enqueued_at__lt=now - settings.OUTBOX_REQUEUE_AFTER)
    lease_free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    due_ids = list(
        Delivery.objects.filter(lost, lease_free, status=Delivery.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    if due_ids:
        Delivery.objects.filter(pk__in=due_ids).update(enqueued_at=now)
        _publish(due_ids)
    return len(due_ids)


TRACKED_EMAIL_EVENTS = {"delivered", "bounced", "complained", "rejected", "failed"}


@transaction.atomic
def delivery_record_tracking(
    *, message_id: str, event_type: str, event_id: str, description: str, esp: str
) -> bool:
    """Record a provider's report on an email we sent (via django-anymail's tracking webhook)
    as notification.<event_type>. Returns False when it is not ours, not an event we keep,
    or a duplicate the provider sent again."""
    if event_type not in TRACKED_EMAIL_EVENTS or not message_id:
        return False
    delivery = (
        Delivery.objects.select_related("request")
        .filter(kind=Delivery.Kind.EMAIL, provider_message_id=message_id)
        .first()
    )
    if delivery is None:
        return False
    event = f"notification.{event_type}"
    marker = canonical_json({"event_id": event_id})[1:-1]
    earlier = AuditEvent.objects.filter(
        decision_id=delivery.decision_id, event=event, payload__contains=marker
    )
    if event_id and earlier.exists():
        return False
    audit_record(
        organization_id=delivery.organization_id,
        decision_id=delivery.decision_id,
        event=event,
        actor=f"provider:{esp}",
        channel=delivery.kind,
        payload=_audit_payload(delivery, event_id=event_id, description=description[:500]),
    )
    return True
