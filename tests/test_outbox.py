"""The outbox: every email, Slack post and callback is a Delivery row written in the transaction
of the change that needs it, published to Celery only after commit, claimed by a lease, retried
with backoff, and re-published by the sweep when its task was lost.

Acme's agent asks alice (and sometimes bob) to sign off a refund.
"""

import json
from datetime import timedelta

import pytest
from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from decisions.models import ApprovalRequest, Decision
from decisions.services import decision_cancel
from notifications import services, tasks
from notifications.models import Delivery
from notifications.senders import _SENDERS, PermanentFailure, RetryLater
from notifications.services import (
    MAX_ATTEMPTS,
    deliveries_requeue_due,
    delivery_attempt,
    delivery_claim,
)
from tests.conftest import ALICE, BOB
from tests.factories import DecisionFactory
from tests.helpers import keep_published_deliveries, wait_for

ACTION = "Refund order #1234 for $80"


class Boom(Exception):
    """Raised on purpose to roll a transaction back."""


class Refund(DecisionFactory):
    action = ACTION


def create_decision_then_roll_back(acme_key, *approvers: str, action: str = ACTION) -> dict:
    """Create a decision inside a transaction that then fails. Returns the ids the decision and
    its deliveries had just before the rollback."""
    seen: dict = {}

    def create_then_fail() -> None:
        with transaction.atomic():
            decision = Refund(api_key=acme_key[0], approvers=approvers, action=action)
            seen["decision_id"] = decision.id
            deliveries = Delivery.objects.filter(decision=decision)
            seen["delivery_ids"] = list(deliveries.values_list("pk", flat=True))
            raise Boom

    with pytest.raises(Boom):
        create_then_fail()
    return seen


def delivery_for(decision: Decision, address: str = ALICE) -> Delivery:
    return Delivery.objects.get(decision=decision, request__address=address)


def age_enqueue(delivery: Delivery) -> None:
    """Pretend its task was published longer ago than the sweep waits for a worker to claim it."""
    long_ago = timezone.now() - settings.OUTBOX_REQUEUE_AFTER - timedelta(seconds=1)
    Delivery.objects.filter(pk=delivery.pk).update(enqueued_at=long_ago)


def audit_events(decision: Decision, event: str) -> list[dict]:
    rows = AuditEvent.objects.filter(decision=decision, event=event).order_by("pk")
    return [json.loads(row.payload) for row in rows]


@pytest.fixture
def published(monkeypatch) -> list[int]:
    """The delivery ids handed to the broker, in order; nothing actually reaches a broker."""
    return keep_published_deliveries(monkeypatch)


@pytest.fixture
def email_sender(monkeypatch):
    """Install a sender for email deliveries: call it with what the sender should do (return
    normally, or raise) and it records every delivery it was asked to send."""

    def install(outcome: Exception | None = None) -> list[Delivery]:
        calls: list[Delivery] = []

        def send(delivery: Delivery) -> None:
            calls.append(delivery)
            if outcome is not None:
                raise outcome

        monkeypatch.setitem(_SENDERS, Delivery.Kind.EMAIL, send)
        return calls

    return install


# --- created with the decision, published on commit -----------------------------------------


def test_a_decision_for_alice_and_bob_writes_one_pending_email_each_and_publishes_after_commit(
    acme_key, published, django_capture_on_commit_callbacks
):
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        decision = Refund(api_key=acme_key[0], approvers=[ALICE, BOB])
        # Nothing leaves the process while the transaction is open.
        assert published == []

    # then
    deliveries = Delivery.objects.filter(decision=decision).select_related("request")
    assert sorted((d.request.address, d.kind, d.purpose, d.status, d.attempts) for d in deliveries) == [
        (ALICE, Delivery.Kind.EMAIL, Delivery.Purpose.ASK, Delivery.Status.PENDING, 0),
        (BOB, Delivery.Kind.EMAIL, Delivery.Purpose.ASK, Delivery.Status.PENDING, 0),
    ]
    assert all(d.organization_id == acme_key[0].organization_id for d in deliveries)
    assert len(callbacks) == 1
    assert sorted(published) == sorted(d.pk for d in deliveries)


def test_a_decision_rolled_back_leaves_no_decision_no_delivery_and_nothing_to_publish(
    acme_key, published, django_capture_on_commit_callbacks
):
    # when: the caller's transaction fails after the decision was created inside it
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        doomed = create_decision_then_roll_back(acme_key, ALICE, BOB)
    assert len(doomed["delivery_ids"]) == 2

    # then
    assert not Decision.objects.exists()
    assert not ApprovalRequest.objects.exists()
    assert not Delivery.objects.exists()
    assert callbacks == []
    assert published == []


# --- claim and lease ------------------------------------------------------------------------


def test_a_claim_is_a_compare_and_set_on_the_lease(acme_key, published):
    # given
    delivery = delivery_for(Refund(api_key=acme_key[0], approvers=[ALICE]))

    # when: one worker claims it
    claimed = delivery_claim(delivery_id=delivery.pk)

    # then: it holds the lease, and a second worker (a duplicate message) gets nothing
    assert claimed is not None
    assert claimed.pk == delivery.pk
    assert claimed.attempts == 1
    assert claimed.lease_until > timezone.now()
    assert delivery_claim(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.attempts == 1


def test_a_delivery_whose_lease_ran_out_can_be_claimed_again(acme_key, published):
    # given: claimed by a worker that then died mid-send
    delivery = delivery_for(Refund(api_key=acme_key[0], approvers=[ALICE]))
    assert delivery_claim(delivery_id=delivery.pk) is not None
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    # when
    reclaimed = delivery_claim(delivery_id=delivery.pk)

    # then: another worker takes it, and the attempt is counted
    assert reclaimed is not None
    assert reclaimed.attempts == 2
    assert reclaimed.lease_until > timezone.now()


def test_a_delivery_not_yet_due_cannot_be_claimed(acme_key, published):
    # given: a retry scheduled for later
    delivery = delivery_for(Refund(api_key=acme_key[0], approvers=[ALICE]))
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))

    # when / then
    assert delivery_claim(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.attempts == 0
    assert delivery.lease_until is None


def test_a_settled_or_missing_delivery_cannot_be_claimed(acme_key, published):
    delivery = delivery_for(Refund(api_key=acme_key[0], approvers=[ALICE]))
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.SENT)

    assert delivery_claim(delivery_id=delivery.pk) is None
    assert delivery_claim(delivery_id=delivery.pk + 1000) is None


# --- one attempt ----------------------------------------------------------------------------


def test_a_successful_send_marks_the_delivery_sent_and_alice_notified(acme_key, published, email_sender):
    # given
    sent = email_sender()
    decision = Refund(api_key=acme_key[0], approvers=[ALICE])
    delivery = delivery_for(decision)

    # when
    delivery_attempt(delivery_id=delivery.pk)

    # then
    assert [d.pk for d in sent] == [delivery.pk]
    assert sent[0].request.address == ALICE
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    assert delivery.sent_at is not None
    assert delivery.lease_until is None
    assert delivery.attempts == 1
    assert ApprovalRequest.objects.get(pk=delivery.request_id).notified_at is not None
    assert audit_events(decision, "notification.sent") == [
        {"delivery_id": delivery.pk, "kind": "email", "purpose": "ask", "address": ALICE, "attempts": 1}
    ]


def test_retry_later_keeps_it_pending_and_schedules_the_first_retry_about_5_seconds_out(
    acme_key, published, email_sender
):
    # given: the mail server is busy
    email_sender(RetryLater("421 try again later"))
    decision = Refund(api_key=acme_key[0], approvers=[ALICE])
    delivery = delivery_for(decision)

    # when
    before = timezone.now()
    delivery_attempt(delivery_id=delivery.pk)
    after = timezone.now()

    # then: 5 s with ±10% jitter
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert before + timedelta(seconds=4.5) <= delivery.next_attempt_at <= after + timedelta(seconds=5.5)
    assert delivery.last_error == "421 try again later"
    # The lease is released so the retry is not blocked by it.
    assert delivery.lease_until is None
    assert not audit_events(decision, "notification.failed")


def test_retry_later_honours_the_remote_retry_after(acme_key, published, email_sender):
    # given: the provider says when to come back
    email_sender(RetryLater("429 slow down", retry_after=120))
    delivery = delivery_for(Refund(api_key=acme_key[0], approvers=[ALICE]))

    # when
    before = timezone.now()
    delivery_attempt(delivery_id=delivery.pk)
    after = timezone.now()

    # then
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert before + timedelta(seconds=120) <= delivery.next_attempt_at <= after + timedelta(seconds=120)
    assert delivery.last_error == "429 slow down"


def test_any_other_error_is_retried_with_the_error_recorded(acme_key, published, email_sender):
    # given: a crash nobody anticipated
    email_sender(ConnectionResetError("connection reset by peer"))
    delivery = delivery_for(Refund(api_key=acme_key[0], approvers=[ALICE]))

    # when
    before = timezone.now()
    delivery_attempt(delivery_id=delivery.pk)

    # then
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.next_attempt_at > before
    assert delivery.last_error == "ConnectionResetError: connection reset by peer"


def test_a_permanent_failure_fails_the_delivery_and_audits_the_reason(acme_key, published, email_sender):
    # given: the address does not exist
    email_sender(PermanentFailure("recipient refused: alice@example.com"))
    decision = Refund(api_key=acme_key[0], approvers=[ALICE])
    delivery = delivery_for(decision)

    # when
    delivery_attempt(delivery_id=delivery.pk)

    # then
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.sent_at is None
    assert delivery.last_error == "recipient refused: alice@example.com"
    [failed] = audit_events(decision, "notification.failed")
    assert failed["reason"] == "recipient refused: alice@example.com"
    assert failed["address"] == ALICE
    assert ApprovalRequest.objects.get(pk=delivery.request_id).notified_at is None


def test_after_the_last_attempt_it_gives_up(acme_key, published, email_sender):
    # given: every attempt but the last has failed already
    email_sender(RetryLater("421 try again later"))
    decision = Refund(api_key=acme_key[0], approvers=[ALICE])
    delivery = delivery_for(decision)
    Delivery.objects.filter(pk=delivery.pk).update(attempts=MAX_ATTEMPTS - 1)

    # when: the last attempt fails too
    delivery_attempt(delivery_id=delivery.pk)

    # then
    delivery.refresh_from_db()
    assert delivery.attempts == MAX_ATTEMPTS
    assert delivery.status == Delivery.Status.FAILED
    assert "421 try again later" in delivery.last_error
    [failed] = audit_events(decision, "notification.failed")
    assert f"gave up after {MAX_ATTEMPTS} attempts" in failed["reason"]


def test_the_retries_together_span_more_than_24_hours(acme_key, published, email_sender):
    # CONTRACT: failures are retried for at least 24 hours. Walk a delivery through every
    # attempt, making each retry due at once, and add up the delays it was given.
    email_sender(RetryLater("421 try again later"))
    delivery = delivery_for(Refund(api_key=acme_key[0], approvers=[ALICE]))
    waited = timedelta(0)
    for _ in range(MAX_ATTEMPTS - 1):
        before = timezone.now()
        delivery_attempt(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == Delivery.Status.PENDING
        waited += delivery.next_attempt_at - before
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())

    delivery_attempt(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert waited > timedelta(hours=24)


def test_an_ask_for_a_cancelled_decision_is_not_sent(acme_key, published, email_sender):
    # given: the agent cancelled before the worker got to alice's email
    sent = email_sender()
    decision = Refund(api_key=acme_key[0], approvers=[ALICE])
    delivery = delivery_for(decision)
    decision_cancel(decision=decision, actor="acme agent")

    # when
    delivery_attempt(delivery_id=delivery.pk)

    # then: alice is not asked about something nobody is waiting for any more
    assert sent == []
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SKIPPED
    assert "cancelled" in delivery.last_error
    assert ApprovalRequest.objects.get(pk=delivery.request_id).notified_at is None
    assert not audit_events(decision, "notification.sent")
    # held back on purpose, so the trail says skipped, not failed
    assert not audit_events(decision, "notification.failed")
    [skipped] = audit_events(decision, "notification.skipped")
    assert "cancelled" in skipped["reason"]


def test_a_kind_without_a_sender_stays_pending_with_a_retry_scheduled(acme_key, published, monkeypatch):
    # given: no email sender is configured
    monkeypatch.delitem(_SENDERS, Delivery.Kind.EMAIL)
    delivery = delivery_for(Refund(api_key=acme_key[0], approvers=[ALICE]))

    # when
    before = timezone.now()
    delivery_attempt(delivery_id=delivery.pk)

    # then: kept, not failed, so it goes out once a sender exists
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.next_attempt_at > before
    assert "no sender" in delivery.last_error


def test_attempting_the_same_delivery_twice_sends_it_once(acme_key, published, email_sender):
    # given: the task ran twice for one id (a duplicate message, or a sweep re-publish)
    sent = email_sender()
    decision = Refund(api_key=acme_key[0], approvers=[ALICE])
    delivery = delivery_for(decision)

    # when
    delivery_attempt(delivery_id=delivery.pk)
    delivery_attempt(delivery_id=delivery.pk)

    # then
    assert len(sent) == 1
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    assert delivery.attempts == 1
    assert len(audit_events(decision, "notification.sent")) == 1


# --- the sweep ------------------------------------------------------------------------------


def test_the_sweep_republishes_deliveries_whose_enqueue_was_lost(acme_key, published):
    # given: alice's and bob's tasks were never published (the broker was down at commit)
    decision = Refund(api_key=acme_key[0], approvers=[ALICE, BOB])
    alice, bob = delivery_for(decision, ALICE), delivery_for(decision, BOB)
    age_enqueue(alice)
    age_enqueue(bob)

    # when
    before = timezone.now()
    count = deliveries_requeue_due()

    # then
    assert count == 2
    assert sorted(published) == sorted([alice.pk, bob.pk])
    for delivery in (alice, bob):
        delivery.refresh_from_db()
        # Re-stamped, so the next sweep does not publish it again straight away.
        assert delivery.enqueued_at >= before
    assert deliveries_requeue_due() == 0
    assert len(published) == 2


def test_the_sweep_leaves_a_freshly_enqueued_delivery_alone(acme_key, published):
    # given: just published; its worker has not had time to claim it
    delivery = delivery_for(Refund(api_key=acme_key[0], approvers=[ALICE]))
    enqueued_at = delivery.enqueued_at

    # when / then
    assert deliveries_requeue_due() == 0
    assert published == []
    delivery.refresh_from_db()
    assert delivery.enqueued_at == enqueued_at


def test_the_sweep_publishes_a_retry_once_it_is_due(acme_key, published, email_sender):
    # given: the first attempt failed and scheduled a retry
    email_sender(RetryLater("421 try again later"))
    delivery = delivery_for(Refund(api_key=acme_key[0], approvers=[ALICE]))
    delivery_attempt(delivery_id=delivery.pk)

    # then: not before it is due
    assert deliveries_requeue_due() == 0
    assert published == []

    # given: its time has come (the task was last published before the retry was scheduled;
    # both are well within OUTBOX_REQUEUE_AFTER, so only the retry makes it due)
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        enqueued_at=now - timedelta(seconds=10), next_attempt_at=now - timedelta(seconds=1)
    )

    # when / then
    assert deliveries_requeue_due() == 1
    assert published == [delivery.pk]


def test_the_sweep_skips_a_delivery_a_worker_holds_until_its_lease_runs_out(acme_key, published):
    # given: a worker is sending it right now
    delivery = delivery_for(Refund(api_key=acme_key[0], approvers=[ALICE]))
    age_enqueue(delivery)
    assert delivery_claim(delivery_id=delivery.pk) is not None

    # then
    assert deliveries_requeue_due() == 0
    assert published == []

    # given: that worker died and its lease ran out
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    # then: another worker gets it
    assert deliveries_requeue_due() == 1
    assert published == [delivery.pk]


def test_the_sweep_ignores_settled_deliveries(acme_key, published):
    decision = Refund(api_key=acme_key[0], approvers=[ALICE, BOB])
    alice, bob = delivery_for(decision, ALICE), delivery_for(decision, BOB)
    age_enqueue(alice)
    age_enqueue(bob)
    Delivery.objects.filter(pk=alice.pk).update(status=Delivery.Status.SENT)
    Delivery.objects.filter(pk=bob.pk).update(status=Delivery.Status.FAILED)

    assert deliveries_requeue_due() == 0
    assert published == []


# --- with a real worker on the broker -------------------------------------------------------


@pytest.fixture
def tasks_run():
    """(task name, args) of every task the worker starts, in order."""
    ran: list[tuple[str, tuple]] = []

    def record(sender=None, task=None, args=None, **kwargs):
        ran.append((task.name, tuple(args or ())))

    task_prerun.connect(record, weak=False)
    try:
        yield ran
    finally:
        task_prerun.disconnect(record)


@pytest.fixture
def tasks_finished():
    """(task name, args, return value) of every task the worker finishes, in order."""
    done: list[tuple[str, tuple, object]] = []

    def record(sender=None, task=None, args=None, retval=None, **kwargs):
        done.append((task.name, tuple(args or ()), retval))

    task_postrun.connect(record, weak=False)
    try:
        yield done
    finally:
        task_postrun.disconnect(record)


def sent_delivery(decision_id: str) -> Delivery | None:
    return Delivery.objects.filter(decision_id=decision_id, status=Delivery.Status.SENT).first()


@pytest.mark.redis
def test_the_worker_emails_alice_when_the_agent_creates_a_decision(api, celery_worker, mailoutbox):
    # when
    response = api.post("/decisions", {"action": ACTION, "approver": ALICE}, format="json")
    assert response.status_code == 201
    decision_id = response.json()["id"]

    # then: the worker sent it through Django's mail layer
    delivery = wait_for(lambda: sent_delivery(decision_id))
    [email] = mailoutbox
    assert email.to == [ALICE]
    assert ACTION in email.subject
    assert decision_id in email.body
    assert delivery.sent_at is not None
    assert ApprovalRequest.objects.get(pk=delivery.request_id).notified_at is not None
    assert AuditEvent.objects.filter(decision_id=decision_id, event="notification.sent").count() == 1
    # The agent sees it too: the decision object says when alice was notified.
    [request] = api.get(f"/decisions/{decision_id}").json()["requests"]
    assert request["notified_at"] is not None


@pytest.mark.redis
def test_a_transactions_deliveries_go_out_as_one_message_and_the_worker_sends_each(
    acme_key, celery_worker, mailoutbox, tasks_run
):
    # when: one commit writes an email for alice and one for bob
    decision = Refund(api_key=acme_key[0], approvers=[ALICE, BOB])
    first, second = sorted(Delivery.objects.filter(decision=decision).values_list("pk", flat=True))
    wait_for(lambda: Delivery.objects.filter(decision=decision, status=Delivery.Status.SENT).count() == 2)

    # then: it published one message for both; the worker sent the first and put the second
    # back on the queue as a message of its own, which it then sent
    assert tasks_run == [("notifications.deliver", (first, second)), ("notifications.deliver", (second,))]
    assert sorted(email.to[0] for email in mailoutbox) == [ALICE, BOB]
    assert AuditEvent.objects.filter(decision=decision, event="notification.sent").count() == 2


@pytest.mark.redis
def test_a_task_enqueued_in_a_transaction_that_rolls_back_never_runs(
    acme_key, celery_worker, mailoutbox, tasks_run
):
    # given: a decision for bob whose transaction fails after its delivery was written
    doomed = create_decision_then_roll_back(acme_key, BOB, action="Refund order #666")
    assert len(doomed["delivery_ids"]) == 1

    # when: a decision for alice commits afterwards
    decision = Refund(api_key=acme_key[0], approvers=[ALICE])
    delivery = wait_for(lambda: sent_delivery(decision.id))

    # then: had bob's task been published, the worker would have taken it first (the queue is
    # FIFO and one worker runs one task at a time), so by now it would be in the record.
    assert tasks_run == [("notifications.deliver", (delivery.pk,))]
    assert doomed["delivery_ids"][0] not in [args[0] for _, args in tasks_run]
    assert [email.to for email in mailoutbox] == [[ALICE]]
    assert not Decision.objects.filter(pk=doomed["decision_id"]).exists()


@pytest.mark.redis
def test_a_delivery_whose_enqueue_was_lost_is_picked_up_by_the_sweep(
    acme_key, celery_worker, mailoutbox, tasks_finished, monkeypatch
):
    # given: alice's decision commits but its publish never reaches the broker
    monkeypatch.setattr(services, "_publish_on_commit", lambda delivery_ids: None)
    decision = Refund(api_key=acme_key[0], approvers=[ALICE])
    delivery = delivery_for(decision)

    # when: the sweep runs while the delivery is fresh
    tasks.sweep_outbox.delay()
    wait_for(lambda: tasks_finished)

    # then: it gives a worker time to claim it, so nothing was published and nothing sent
    assert tasks_finished == [("notifications.sweep_outbox", (), 0)]
    assert mailoutbox == []
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.attempts == 0

    # when: nobody has claimed it for longer than OUTBOX_REQUEUE_AFTER, and the sweep runs
    age_enqueue(delivery)
    tasks.sweep_outbox.delay()
    wait_for(lambda: len(tasks_finished) == 3)

    # then: the sweep published it, and the worker sent it
    assert tasks_finished == [
        ("notifications.sweep_outbox", (), 0),
        ("notifications.sweep_outbox", (), 1),
        ("notifications.deliver", (delivery.pk,), None),
    ]
    [email] = mailoutbox
    assert email.to == [ALICE]
    assert ACTION in email.subject
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    assert ApprovalRequest.objects.get(pk=delivery.request_id).notified_at is not None
