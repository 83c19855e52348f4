"""Races on PostgreSQL: many threads, each with its own connection, released together.

The contract's promise: the first valid final transition wins, everyone else is told it was
already decided, and the audit trail records exactly one `decision.resolved` for it and stays
an unbroken chain.

WHY transactional_db: each thread has its own database connection, so it sees only committed
rows; a test wrapped in one transaction would hide its data from them.
"""

import io
import itertools
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from audit.selectors import sealed_events
from decisions.models import Decision, Status
from decisions.services import (
    AlreadyAnswered,
    AlreadyResolved,
    DecisionSpec,
    decision_answer,
    decision_cancel,
    decision_create,
    decision_expire,
    request_fingerprint,
)
from organizations.models import ApiKey
from tests.helpers import race, seal

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROUNDS = 3  # races are probabilistic: run the main ones a few times


@pytest.fixture(autouse=True)
def _no_publishing(monkeypatch):
    # Committed transactions publish delivery tasks on commit. Nobody consumes them here, and
    # they would pile up in the shared broker: what is under test is the database.
    monkeypatch.setattr("notifications.services._publish", lambda delivery_ids: None)


def verify_audit() -> str:
    out = io.StringIO()
    call_command("verify_audit", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def resolved_events(decision_id: str):
    return AuditEvent.objects.filter(decision_id=decision_id, event="decision.resolved")


def approvers(n: int) -> list[str]:
    return [f"approver{i:02}@example.com" for i in range(1, n + 1)]


@pytest.fixture
def agent(acme_key):
    return acme_key[0]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_cancel_races_approvals_and_exactly_one_wins(agent, round_):
    # given a quorum-any decision put to 25 approvers
    decision, _ = decision_create(
        api_key=agent,
        spec=DecisionSpec(
            action="Wire 40 000 EUR to Globex", stages=[{"approvers": approvers(25), "quorum": "any"}]
        ),
    )
    request_ids = list(decision.requests.values_list("pk", flat=True))
    assert len(request_ids) == 25

    def cancel():
        # each thread loads its own copy: the service writes the outcome into the instance
        return decision_cancel(decision=Decision.objects.get(pk=decision.pk), actor=agent.actor).status

    def approve(request_id):
        return lambda: decision_answer(request_id=request_id, choice="approve", via="email").status

    # when 25 cancels and 25 approvals (each by a different approver) go at once
    calls = [cancel] * 25 + [approve(pk) for pk in request_ids]
    results = race(*calls)

    # then exactly one call won, and everyone else was told it was already decided
    winners = [r for r in results if isinstance(r, str)]
    losers = [r for r in results if isinstance(r, AlreadyResolved | AlreadyAnswered)]
    unexpected = [r for r in results if not isinstance(r, str | AlreadyResolved | AlreadyAnswered)]
    assert unexpected == []
    assert len(winners) == 1
    assert len(losers) == 49

    decision.refresh_from_db()
    assert decision.status == winners[0]
    assert decision.outcome["status"] == winners[0]
    assert resolved_events(decision.pk).count() == 1
    assert resolved_events(decision.pk).get().actor == decision.outcome["by"]
    assert "intact" in verify_audit()


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_cancel_races_the_timeout_and_exactly_one_wins(agent, round_):
    # given a decision whose deadline has just passed, before the expiry sweep got to it
    decision, _ = decision_create(
        api_key=agent,
        spec=DecisionSpec(
            action="Rotate the production database password",
            stages=[{"approvers": approvers(2), "quorum": "any"}],
            on_timeout="deny",
        ),
    )
    Decision.objects.filter(pk=decision.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    def cancel():
        return decision_cancel(decision=Decision.objects.get(pk=decision.pk), actor=agent.actor).status

    def expire():
        # decision_expire answers None, not an exception, when it did not win
        resolved = decision_expire(decision_id=decision.pk)
        return resolved.status if resolved else None

    # when 25 cancels and 25 expiries go at once
    results = race(*([cancel] * 25 + [expire] * 25))

    winners = [r for r in results if isinstance(r, str)]
    unexpected = [r for r in results if r is not None and not isinstance(r, str | AlreadyResolved)]
    assert unexpected == []
    assert len(winners) == 1
    decision.refresh_from_db()
    assert decision.status == winners[0]
    assert decision.status in {Status.CANCELLED, Status.DENIED}
    assert resolved_events(decision.pk).count() == 1
    assert "intact" in verify_audit()


def test_concurrent_creates_are_all_sealed_into_one_contiguous_chain(agent):
    # given an organization with no audit trail yet, and twenty creates at once: writers take
    # no lock between them, so their events commit in any order
    assert not AuditEvent.objects.filter(organization_id=agent.organization_id).exists()

    def create(n):
        def call():
            key = ApiKey.objects.select_related("organization").get(pk=agent.pk)
            decision, _ = decision_create(
                api_key=key,
                spec=DecisionSpec(
                    action=f"Refund order #{n}", stages=[{"approvers": approvers(2), "quorum": "any"}]
                ),
            )
            return decision.pk

        return call

    results = race(*[create(n) for n in range(20)])
    seal()

    assert all(isinstance(r, str) for r in results), [r for r in results if not isinstance(r, str)]
    assert len(set(results)) == 20
    events = list(sealed_events().filter(organization_id=agent.organization_id).order_by("seq"))
    # each create records itself and asks two approvers: three events, none lost, none doubled
    assert len(events) == 20 * 3
    assert [e.seq for e in events] == list(range(1, 61))
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == previous.hash
    assert "intact: 60 sealed events" in verify_audit()


def test_concurrent_requests_with_one_idempotency_key_create_one_decision(agent):
    body = {"action": "Refund order #1042", "approver": "alice@example.com", "details": {"amount": 120}}

    def create():
        key = ApiKey.objects.select_related("organization").get(pk=agent.pk)
        decision, created = decision_create(
            api_key=key,
            idempotency_key="retry-7f3c",
            fingerprint=request_fingerprint(body),
            spec=DecisionSpec(
                action=body["action"],
                details=body["details"],
                stages=[{"approvers": [body["approver"]], "quorum": "any"}],
            ),
        )
        return decision.pk, created

    # when an agent's retries of one request arrive together
    results = race(*[create] * 10)

    # then they all got the same decision, and only one of them created it
    assert all(isinstance(r, tuple) for r in results), [r for r in results if not isinstance(r, tuple)]
    assert Decision.objects.count() == 1
    decision_id = Decision.objects.get().pk
    assert {pk for pk, _ in results} == {decision_id}
    assert Counter(created for _, created in results) == Counter({True: 1, False: 9})
    assert AuditEvent.objects.filter(event="decision.created").count() == 1
    assert "intact" in verify_audit()


def test_concurrent_approvals_count_exactly_towards_the_quorum(agent):
    # given 3 approvals needed out of 10 approvers, all of whom approve at the same moment
    decision, _ = decision_create(
        api_key=agent,
        spec=DecisionSpec(
            action="Grant production access to the new contractor",
            stages=[{"approvers": approvers(10), "quorum": 3}],
        ),
    )
    request_ids = list(decision.requests.values_list("pk", flat=True))

    def approve(request_id):
        return lambda: decision_answer(request_id=request_id, choice="approve", via="email").status

    results = race(*[approve(pk) for pk in request_ids])

    # then the first three count (the third one resolves it) and the other seven are too late
    assert Counter(r if isinstance(r, str) else type(r) for r in results) == Counter(
        {Status.PENDING: 2, Status.APPROVED: 1, AlreadyResolved: 7}
    )
    decision.refresh_from_db()
    assert decision.status == Status.APPROVED
    assert decision.requests.filter(state="answered").count() == 3
    assert decision.requests.filter(state="closed").count() == 7
    assert resolved_events(decision.pk).count() == 1
    assert "intact" in verify_audit()


def test_concurrent_approvals_complete_a_stage_exactly_once(agent):
    # given a first stage that needs all 10 approvers, and a director as the second stage
    decision, _ = decision_create(
        api_key=agent,
        spec=DecisionSpec(
            action="Sign the Globex contract",
            stages=[
                {"approvers": approvers(10), "quorum": "all"},
                {"approvers": ["director@example.com"], "quorum": "any"},
            ],
        ),
    )
    request_ids = list(decision.requests.values_list("pk", flat=True))

    def approve(request_id):
        return lambda: decision_answer(request_id=request_id, choice="approve", via="email").status

    results = race(*[approve(pk) for pk in request_ids])

    # then every approval counted, and the director was asked once, not once per approver
    assert results == [Status.PENDING] * 10
    decision.refresh_from_db()
    assert decision.current_stage == 1
    assert list(decision.requests.filter(stage=1).values_list("address", flat=True)) == [
        "director@example.com"
    ]
    assert (
        AuditEvent.objects.filter(decision_id=decision.pk, actor="system", event="approver.asked").count()
        == 11
    )
    assert "intact" in verify_audit()


def test_a_double_click_counts_once(agent):
    # given alice and bob must both approve
    decision, _ = decision_create(
        api_key=agent,
        spec=DecisionSpec(
            action="Refund order #1042",
            stages=[{"approvers": ["alice@example.com", "bob@example.com"], "quorum": "all"}],
        ),
    )
    alice_request = decision.requests.get(address="alice@example.com")

    # when alice's approval arrives ten times at once (email and Slack, double clicks)
    results = race(
        *[lambda: decision_answer(request_id=alice_request.pk, choice="approve", via="email").status] * 10
    )

    # then it counts once, and the decision still waits for bob
    assert Counter(r if isinstance(r, str) else type(r) for r in results) == Counter(
        {Status.PENDING: 1, AlreadyAnswered: 9}
    )
    decision.refresh_from_db()
    assert decision.status == Status.PENDING
    assert AuditEvent.objects.filter(decision_id=decision.pk, event="decision.answered").count() == 1
