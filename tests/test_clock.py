"""The clock: deadlines, reminders, escalations and chain repeats, through decisions.services.tick.

Named actors: Acme's agent asks alice first; bob the backup is the first escalation level,
carol the second, dave the third.

The tests drive time themselves, never sleep: `age(decision, minutes)` moves a decision back
in time (created_at, expires_at and next_due_at together, as if it had been made that many
minutes ago) and then the sweep, fire_due(), runs as beat would run it. decision_tick() is
also called directly with a `now` in the future.
"""

from collections import Counter
from datetime import datetime, timedelta

import factory
import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from decisions.models import ApprovalRequest, Decision, Status
from decisions.schedule import build_schedule
from decisions.services import AlreadyResolved, DeadlinePassed, DecisionSpec, decision_answer, decision_create
from decisions.services.tick import decision_tick, fire_due
from notifications.email import approval_email
from notifications.models import Delivery
from notifications.services import delivery_attempt
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import DecisionFactory
from tests.helpers import race

DAVE = "dave@example.com"
PUBLIC_CALLBACK = "https://93.184.215.14/hook"
THREE_LEVELS = [
    {"after_minutes": 10, "approvers": [BOB]},
    {"after_minutes": 20, "approvers": [CAROL]},
    {"after_minutes": 30, "approvers": [DAVE]},
]


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def agent(acme_key):
    """Acme's API key, as decision_create expects it."""
    return acme_key[0]


class Refund(DecisionFactory):
    details = factory.Dict({"amount": 120, "currency": "EUR"})
    timeout_minutes = 60


def age(decision: Decision, minutes: float) -> None:
    """Make the decision `minutes` old: its whole timeline moves back, the clock stays real."""
    created_at = Decision.objects.values_list("created_at", flat=True).get(pk=decision.pk)
    delta = created_at - (timezone.now() - timedelta(minutes=minutes))
    Decision.objects.filter(pk=decision.pk).update(
        created_at=F("created_at") - delta,
        expires_at=F("expires_at") - delta,
        next_due_at=F("next_due_at") - delta,
    )


def at(decision: Decision, minutes: float) -> datetime:
    """The moment `minutes` after the decision was made (for decision_tick's `now`)."""
    return Decision.objects.get(pk=decision.pk).created_at + timedelta(minutes=minutes)


def reload(decision: Decision) -> Decision:
    return Decision.objects.get(pk=decision.pk)


def answer(decision: Decision, address: str, choice: str = "approve") -> Decision:
    request = decision.requests.get(address=address, state=ApprovalRequest.State.PENDING)
    return decision_answer(request_id=request.pk, choice=choice, via="email")


def reminded(decision: Decision) -> list[str]:
    """Every reminder delivery so far, as the addresses it goes to (repeats included)."""
    return sorted(
        Delivery.objects.filter(decision_id=decision.pk, purpose=Delivery.Purpose.REMIND).values_list(
            "request__address", flat=True
        )
    )


def asked(decision: Decision) -> list[tuple[str, int]]:
    return sorted(decision.requests.values_list("address", "level"))


def events(decision: Decision, name: str):
    return AuditEvent.objects.filter(decision_id=decision.pk, event=name).order_by("pk")


# --- deadlines ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_timeout", "status", "choice"),
    [
        ("expire", Status.EXPIRED, None),
        ("deny", Status.DENIED, "deny"),
        ("approve", Status.APPROVED, "approve"),
    ],
)
def test_the_deadline_resolves_it_as_on_timeout_asks(agent, on_timeout, status, choice):
    # given a one-hour decision nobody answers, with a callback to call
    decision = Refund(
        api_key=agent, approvers=(ALICE, BOB), on_timeout=on_timeout, callback_url=PUBLIC_CALLBACK
    )

    # when the clock sweeps just after its deadline
    age(decision, 61)
    fired = fire_due()

    # then it is resolved by the system, via the timeout, as on_timeout says
    assert fired == 1
    decision = reload(decision)
    assert decision.status == status
    assert decision.resolved_at is not None
    assert decision.outcome["status"] == status
    assert decision.outcome["choice"] == choice
    assert decision.outcome["by"] == "system"
    assert decision.outcome["via"] == "timeout"
    # nobody can answer any more: the requests are closed
    assert set(decision.requests.values_list("state", flat=True)) == {"closed"}
    resolved = events(decision, "decision.resolved").get()
    assert (resolved.actor, resolved.channel) == ("system", "timeout")
    callbacks = decision.deliveries.filter(kind=Delivery.Kind.CALLBACK)
    assert list(callbacks.values_list("purpose", flat=True)) == [Delivery.Purpose.OUTCOME]


def test_an_overdue_decision_is_resolved_not_reminded(agent):
    # The sweep was down for the whole hour (its reminders at 30 and 54 minutes are long past):
    # reminding alice of a decision that is over would only confuse her.
    decision = Refund(api_key=agent)

    age(decision, 75)
    fire_due()

    assert reload(decision).status == Status.EXPIRED
    assert reminded(decision) == []
    assert not events(decision, "decision.reminded").exists()


def test_without_a_callback_url_the_deadline_enqueues_no_callback(agent):
    decision = Refund(api_key=agent)

    age(decision, 61)
    fire_due()

    assert reload(decision).status == Status.EXPIRED
    assert not decision.deliveries.filter(kind=Delivery.Kind.CALLBACK).exists()


def test_nothing_fires_before_the_deadline_is_reached(agent):
    decision = Refund(api_key=agent, reminders=[])

    age(decision, 59.9)

    assert fire_due() == 0
    assert reload(decision).status == Status.PENDING


# --- reminders ----------------------------------------------------------------------------


def test_reminders_at_the_organizations_default_points_go_to_whoever_has_not_answered(agent):
    # given a one-hour decision alice and bob must both approve: reminders due at 30 and 54 min
    decision = Refund(api_key=agent, approvers=(ALICE, BOB), quorum="all")
    assert reload(decision).reminders == [30.0, 54.0]

    # just before half-time nothing is due
    age(decision, 29.9)
    assert fire_due() == 0
    assert reminded(decision) == []

    # bob approves; at half-time only alice, who has not answered, is reminded
    answer(decision, BOB)
    age(decision, 30)
    assert fire_due() == 1
    assert reminded(decision) == [ALICE]
    reminder = events(decision, "decision.reminded").get()
    assert reminder.actor == "system"
    assert '"reminded":["alice@example.com"]' in reminder.payload
    assert reload(decision).next_due_at == at(decision, 54)

    # at 90 % of the wait she is reminded again
    age(decision, 54)
    assert fire_due() == 1
    assert reminded(decision) == [ALICE, ALICE]
    assert reload(decision).next_due_at == reload(decision).expires_at


def test_no_reminder_once_the_decision_is_resolved(agent):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB))
    answer(decision, ALICE, "deny")

    # its reminder times come and go
    age(decision, 55)

    assert fire_due() == 0
    assert reminded(decision) == []
    assert reload(decision).status == Status.DENIED
    assert reload(decision).outcome["by"] == ALICE


def test_a_queued_reminder_is_not_sent_to_an_approver_who_answered_since(agent, mailoutbox):
    # given alice and bob were reminded at half-time, the emails not yet sent
    decision = Refund(api_key=agent, approvers=(ALICE, BOB), quorum="all")
    age(decision, 30)
    fire_due()
    reminders = {d.request.address: d for d in Delivery.objects.filter(purpose="remind")}
    assert set(reminders) == {ALICE, BOB}

    # when alice answers before her reminder goes out
    answer(decision, ALICE)
    delivery_attempt(delivery_id=reminders[ALICE].pk)
    delivery_attempt(delivery_id=reminders[BOB].pk)

    # then only bob gets it, and it says it is a reminder
    assert Delivery.objects.get(pk=reminders[ALICE].pk).status == Delivery.Status.SKIPPED
    assert Delivery.objects.get(pk=reminders[BOB].pk).status == Delivery.Status.SENT
    assert [m.to for m in mailoutbox] == [[BOB]]
    assert mailoutbox[0].subject == "Reminder: Approval needed: Refund order #1042"
    assert approval_email(reminders[BOB]).subject == mailoutbox[0].subject


def test_reminders_go_to_the_current_stage_over_the_channel_each_was_asked_on(agent):
    # given a manager stage (alice) already approved, and a second stage of carol by email and
    # erin on Slack
    decision, _ = decision_create(
        api_key=agent,
        spec=DecisionSpec(
            action="Sign the Globex contract",
            stages=[
                {"approvers": [ALICE], "quorum": "any"},
                {"approvers": [CAROL, "slack:U123ERIN"], "quorum": "all"},
            ],
            timeout_minutes=60,
        ),
    )
    answer(decision, ALICE)

    age(decision, 30)
    fire_due()

    reminders = Delivery.objects.filter(decision_id=decision.pk, purpose=Delivery.Purpose.REMIND)
    assert sorted(reminders.values_list("request__address", "kind")) == [
        (CAROL, "email"),
        ("slack:U123ERIN", "slack"),
    ]


def test_a_decisions_own_reminders_replace_the_organizations(agent):
    decision = Refund(api_key=agent, reminders=[5, 15])
    assert [step["at"] for step in reload(decision).schedule] == [5, 15]

    age(decision, 5)
    assert fire_due() == 1
    assert reminded(decision) == [ALICE]

    age(decision, 15)
    assert fire_due() == 1
    assert reminded(decision) == [ALICE, ALICE]

    # the organization's half-time point does not apply to this decision
    age(decision, 31)
    assert fire_due() == 0
    assert reminded(decision) == [ALICE, ALICE]


def test_no_reminders_when_the_agent_asks_for_none(agent):
    decision = Refund(api_key=agent, reminders=[])

    age(decision, 55)

    assert fire_due() == 0
    assert reminded(decision) == []


def test_changed_organization_reminder_points_apply_to_new_decisions(agent, acme):
    # given Acme reminds once, at a quarter of the wait
    acme.reminder_points = [0.25]
    acme.full_clean()
    acme.save(update_fields=["reminder_points"])

    decision = Refund(api_key=agent, timeout_minutes=40)

    assert reload(decision).reminders == [10.0]
    age(decision, 10)
    assert fire_due() == 1
    assert reminded(decision) == [ALICE]
    # and not at the default 50 % / 90 %
    age(decision, 36)
    assert fire_due() == 0
    assert reminded(decision) == [ALICE]


# --- escalation -----------------------------------------------------------------------------


def test_three_level_escalation_asks_each_level_on_time(agent, api):
    # given alice is asked first; bob at 10, carol at 20, dave at 30 minutes if nobody answers
    decision = Refund(api_key=agent, escalation=THREE_LEVELS, reminders=[])
    assert asked(decision) == [(ALICE, 0)]

    age(decision, 9.9)
    assert fire_due() == 0
    assert asked(decision) == [(ALICE, 0)]

    age(decision, 10)
    assert fire_due() == 1
    assert asked(decision) == [(ALICE, 0), (BOB, 1)]

    age(decision, 20)
    assert fire_due() == 1
    assert asked(decision) == [(ALICE, 0), (BOB, 1), (CAROL, 2)]

    age(decision, 30)
    assert fire_due() == 1
    assert asked(decision) == [(ALICE, 0), (BOB, 1), (CAROL, 2), (DAVE, 3)]

    # each level asked by email and recorded, in order
    escalated = events(decision, "decision.escalated")
    assert [e.payload for e in escalated] == [
        '{"asked":["bob@example.com"],"level":1,"stage":0}',
        '{"asked":["carol@example.com"],"level":2,"stage":0}',
        '{"asked":["dave@example.com"],"level":3,"stage":0}',
    ]
    assert {e.actor for e in escalated} == {"system"}
    assert events(decision, "approver.asked").count() == 4
    ask_emails = decision.deliveries.filter(kind="email", purpose="ask")
    assert sorted(ask_emails.values_list("request__address", flat=True)) == [ALICE, BOB, CAROL, DAVE]
    # escalation asks, it does not remind
    assert reminded(decision) == []

    # the agent sees who was asked at which level
    requests = api.get(f"/decisions/{decision.pk}").json()["requests"]
    assert [(r["address"], r["level"], r["state"]) for r in requests] == [
        (ALICE, 0, "pending"),
        (BOB, 1, "pending"),
        (CAROL, 2, "pending"),
        (DAVE, 3, "pending"),
    ]

    # after the last level only the deadline is left
    assert reload(decision).next_due_at == reload(decision).expires_at

    # alice, asked first, can still approve after the escalation
    answer(decision, ALICE)
    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.outcome["by"] == ALICE
    assert dict(decision.requests.values_list("address", "state")) == {
        ALICE: "answered",
        BOB: "closed",
        CAROL: "closed",
        DAVE: "closed",
    }


def test_an_escalated_approver_can_answer(agent):
    decision = Refund(api_key=agent, escalation=THREE_LEVELS, reminders=[])
    age(decision, 10)
    fire_due()

    answer(decision, BOB, "deny")

    decision = reload(decision)
    assert decision.status == Status.DENIED
    assert decision.outcome["by"] == BOB
    # carol and dave are never asked: the decision is over
    age(decision, 35)
    assert fire_due() == 0
    assert asked(decision) == [(ALICE, 0), (BOB, 1)]


def test_escalation_does_not_ask_someone_already_asked_again(agent):
    # bob is asked from the start; the escalation names him again, along with carol
    decision = Refund(
        api_key=agent,
        approvers=(ALICE, BOB),
        escalation=[{"after_minutes": 10, "approvers": [BOB, CAROL]}],
        reminders=[],
    )

    age(decision, 10)
    fire_due()

    assert asked(decision) == [(ALICE, 0), (BOB, 0), (CAROL, 1)]
    assert '"asked":["carol@example.com"]' in events(decision, "decision.escalated").get().payload


def test_escalation_asks_in_the_current_stage(agent):
    # given a manager (alice) then a director (carol) stage; dave is the escalation at 10 minutes
    decision, _ = decision_create(
        api_key=agent,
        spec=DecisionSpec(
            action="Sign the Globex contract",
            stages=[{"approvers": [ALICE], "quorum": "any"}, {"approvers": [CAROL], "quorum": "any"}],
            escalation=[{"after_minutes": 10, "approvers": [DAVE]}],
            timeout_minutes=60,
            reminders=[],
        ),
    )
    answer(decision, ALICE)

    age(decision, 10)
    fire_due()

    # dave is asked alongside the director, at stage 1, level 1
    assert sorted(decision.requests.values_list("address", "stage", "level")) == [
        (ALICE, 0, 0),
        (CAROL, 1, 0),
        (DAVE, 1, 1),
    ]
    answer(decision, DAVE)
    assert reload(decision).status == Status.APPROVED


def test_chain_repeat_renotifies_each_levels_pending_approvers_at_its_time(agent):
    # given the three levels, repeated once, in a two-hour wait: the cycle is the last
    # level's 30 minutes plus the first level's 10 (decisions/schedule.py), so the repeat
    # re-notifies level 0 at 40, level 1 at 50, level 2 at 60 and level 3 at 70 minutes.
    # A quorum of two keeps it pending when bob approves.
    decision = Refund(
        api_key=agent,
        quorum=2,
        escalation=THREE_LEVELS,
        escalation_repeat=1,
        timeout_minutes=120,
        reminders=[],
    )
    assert [(s["at"], s["kind"], s.get("level")) for s in reload(decision).schedule] == [
        (10, "escalate", 1),
        (20, "escalate", 2),
        (30, "escalate", 3),
        (40, "renotify", 0),
        (50, "renotify", 1),
        (60, "renotify", 2),
        (70, "renotify", 3),
    ]
    age(decision, 30)
    fire_due()
    assert asked(decision) == [(ALICE, 0), (BOB, 1), (CAROL, 2), (DAVE, 3)]
    assert reminded(decision) == []

    # at 40 the chain starts over with alice, and only alice
    age(decision, 39.9)
    assert fire_due() == 0
    age(decision, 40)
    assert fire_due() == 1
    assert reminded(decision) == [ALICE]

    # bob approves in the meantime: at 50 there is nobody at level 1 left to re-notify
    answer(decision, BOB)
    age(decision, 50)
    assert fire_due() == 1
    assert reminded(decision) == [ALICE]

    age(decision, 60)
    fire_due()
    assert reminded(decision) == [ALICE, CAROL]

    age(decision, 70)
    fire_due()
    assert reminded(decision) == [ALICE, CAROL, DAVE]
    # nobody is asked twice: re-notifications are reminders, not new requests
    assert decision.requests.count() == 4

    assert [e.payload for e in events(decision, "decision.reminded")] == [
        '{"reminded":["alice@example.com"],"steps":["renotify:0"]}',
        '{"reminded":["carol@example.com"],"steps":["renotify:2"]}',
        '{"reminded":["dave@example.com"],"steps":["renotify:3"]}',
    ]
    # then only the deadline is left
    assert reload(decision).next_due_at == reload(decision).expires_at


def test_repeats_at_or_after_the_deadline_are_dropped():
    # In a 65-minute wait the repeat's last step (level 3 at 70) would come after the deadline.
    schedule = build_schedule(timeout_minutes=65, reminders=[], escalation=THREE_LEVELS, repeat=1)

    assert [(s["at"], s["kind"], s.get("level")) for s in schedule][-1] == (60, "renotify", 2)


def test_steps_due_together_fire_together_with_one_reminder_per_approver(agent):
    # given escalation at 10 (bob) and 20 (carol), and the default reminders at 30 and 54
    decision = Refund(api_key=agent, escalation=THREE_LEVELS[:2])

    # when the sweep first sees it at 55 minutes (it was down): four steps are due at once
    age(decision, 55)
    assert fire_due() == 1

    # then both levels are asked, and alice is reminded once, not twice; bob and carol, asked
    # just now, are not reminded of what they have only just received
    assert asked(decision) == [(ALICE, 0), (BOB, 1), (CAROL, 2)]
    assert reminded(decision) == [ALICE]
    assert events(decision, "decision.escalated").count() == 2
    reminder = events(decision, "decision.reminded").get()
    assert '"steps":["escalate:1","escalate:2","remind","remind"]' in reminder.payload
    decision = reload(decision)
    assert decision.schedule_position == len(decision.schedule) == 4
    assert decision.next_due_at == decision.expires_at

    # and the next sweep finds nothing left to do
    assert fire_due() == 0


# --- the tick -------------------------------------------------------------------------------


def test_next_due_at_advances_and_the_same_tick_twice_fires_once(agent):
    decision = Refund(api_key=agent, escalation=THREE_LEVELS[:1])
    # the first step is bob's escalation at 10 minutes
    assert reload(decision).next_due_at == at(decision, 10)
    moment = at(decision, 10)

    assert decision_tick(decision_id=decision.pk, now=moment) is True
    assert decision_tick(decision_id=decision.pk, now=moment) is False

    assert asked(decision) == [(ALICE, 0), (BOB, 1)]
    assert events(decision, "decision.escalated").count() == 1
    # the next step is the half-time reminder
    assert reload(decision).next_due_at == at(decision, 30)
    assert decision_tick(decision_id=decision.pk, now=at(decision, 29.9)) is False
    assert decision_tick(decision_id=decision.pk, now=at(decision, 30)) is True
    # bob, asked at 10 minutes, has not answered either: both are reminded
    assert reminded(decision) == [ALICE, BOB]
    assert reload(decision).next_due_at == at(decision, 54)


def test_ticking_past_the_deadline_expires_it_once(agent):
    decision = Refund(api_key=agent, callback_url=PUBLIC_CALLBACK)
    moment = at(decision, 60)

    assert decision_tick(decision_id=decision.pk, now=moment) is True
    assert decision_tick(decision_id=decision.pk, now=moment) is False

    assert reload(decision).status == Status.EXPIRED
    assert events(decision, "decision.resolved").count() == 1
    assert decision.deliveries.filter(kind="callback").count() == 1


def test_a_resolved_decision_that_looks_due_is_not_touched(agent):
    # given alice approved; the decision's next_due_at (its half-time reminder) has passed
    decision = Refund(api_key=agent)
    answer(decision, ALICE)
    age(decision, 61)
    before = AuditEvent.objects.count()

    assert decision_tick(decision_id=decision.pk, now=at(decision, 61)) is False
    assert fire_due() == 0

    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.outcome["by"] == ALICE
    assert AuditEvent.objects.count() == before
    assert reminded(decision) == []


def test_fire_due_returns_how_many_decisions_it_fired(agent):
    overdue = [Refund(api_key=agent) for _ in range(2)]
    escalating = Refund(api_key=agent, escalation=THREE_LEVELS)
    waiting = Refund(api_key=agent)
    for decision in overdue:
        age(decision, 61)
    age(escalating, 10)
    age(waiting, 5)

    assert fire_due() == 3
    assert fire_due() == 0

    assert [reload(d).status for d in overdue] == [Status.EXPIRED, Status.EXPIRED]
    assert asked(escalating) == [(ALICE, 0), (BOB, 1)]
    assert reload(waiting).status == Status.PENDING
    assert (
        not AuditEvent.objects.filter(decision_id=waiting.pk)
        .exclude(event__in=["decision.created", "approver.asked"])
        .exists()
    )


def test_fire_due_works_through_batches(agent):
    # five decisions due, read two at a time: every batch is fired, none twice
    decisions = [Refund(api_key=agent) for _ in range(5)]
    for decision in decisions:
        age(decision, 61)

    assert fire_due(batch=2) == 5

    assert {reload(d).status for d in decisions} == {Status.EXPIRED}
    assert AuditEvent.objects.filter(event="decision.resolved").count() == 5


def test_the_sweep_reads_due_ids_through_the_partial_index_condition(agent):
    Refund(api_key=agent)

    with CaptureQueriesContext(connection) as queries:
        fire_due()

    # The index decision_pending_due is partial (WHERE status = 'pending'): the planner can
    # use it only if the sweep's own query states that condition, next to the bound on
    # next_due_at that the index orders by.
    due_query = queries.captured_queries[0]["sql"]
    assert '"decisions_decision"."status" = ' in due_query
    assert "pending" in due_query
    assert '"decisions_decision"."next_due_at" <= ' in due_query
    assert 'ORDER BY "decisions_decision"."next_due_at" ASC' in due_query
    assert "LIMIT 500" in due_query
    # nothing was due: that one query is all the sweep cost
    assert len(queries.captured_queries) == 1


@pytest.mark.postgres
def test_postgresql_can_answer_the_sweep_from_the_partial_index(agent):
    Refund(api_key=agent)
    due = (
        Decision.objects.filter(status=Status.PENDING, next_due_at__lte=timezone.now())
        .order_by("next_due_at")
        .values_list("pk", flat=True)[:500]
    )
    # With a handful of rows a sequential scan is cheaper; forbid it to see whether the
    # index can serve the query at all (it cannot if the query does not imply its WHERE).
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")

    assert "decision_pending_due" in due.explain()


# --- races on PostgreSQL ----------------------------------------------------------------------


@pytest.fixture
def _no_publishing(monkeypatch):
    # Committed transactions publish delivery tasks; nobody consumes them here, and they would
    # pile up in the shared broker: what is under test is the database.
    monkeypatch.setattr("notifications.services._publish", lambda delivery_ids: None)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_no_publishing")
def test_two_concurrent_sweeps_fire_each_due_decision_once(agent):
    # given 50 due decisions: 25 past their deadline, 25 with two escalation levels due
    overdue = [Refund(api_key=agent, action=f"Refund order #{n}") for n in range(25)]
    escalating = [
        Refund(api_key=agent, action=f"Rotate key #{n}", escalation=THREE_LEVELS, reminders=[])
        for n in range(25)
    ]
    for decision in overdue:
        age(decision, 61)
    for decision in escalating:
        age(decision, 25)

    # when two sweeps (two beats by mistake) run at the same moment
    results = race(fire_due, fire_due)

    # then between them they fired each decision exactly once
    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 50
    resolved = Counter(
        AuditEvent.objects.filter(event="decision.resolved").values_list("decision_id", flat=True)
    )
    assert resolved == Counter({d.pk: 1 for d in overdue})
    assert {reload(d).status for d in overdue} == {Status.EXPIRED}
    escalated = Counter(
        AuditEvent.objects.filter(event="decision.escalated").values_list("decision_id", flat=True)
    )
    assert escalated == Counter({d.pk: 2 for d in escalating})  # levels 1 and 2, once each
    for decision in escalating:
        assert asked(decision) == [(ALICE, 0), (BOB, 1), (CAROL, 2)]
    assert Delivery.objects.filter(kind="callback").count() == 0  # no callback_url here
    assert Delivery.objects.filter(purpose="ask").count() == 25 + 25 * 3
    # and nothing is left for a third sweep
    assert fire_due() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_no_publishing")
@pytest.mark.parametrize("round_", range(5))
def test_a_click_after_the_deadline_loses_to_the_timeout(agent, round_):
    # given a decision whose deadline passed a moment ago, before the sweep got to it
    decision = Refund(api_key=agent, approvers=(ALICE, BOB), callback_url=PUBLIC_CALLBACK)
    Decision.objects.filter(pk=decision.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1), next_due_at=timezone.now() - timedelta(seconds=1)
    )
    alice = decision.requests.get(address=ALICE)

    # when alice's approval and the clock's tick arrive together
    clicked, ticked = race(
        lambda: decision_answer(request_id=alice.pk, choice="approve", via="email"),
        lambda: decision_tick(decision_id=decision.pk),
    )

    # then the click is refused as too late (or already decided), never counted
    assert isinstance(clicked, DeadlinePassed | AlreadyResolved), clicked
    assert ticked in (True, False), ticked
    # A tick that found the row locked by the click skips it (SKIP LOCKED); the next tick,
    # a second later, expires it.
    fire_due()
    decision = reload(decision)
    assert decision.status == Status.EXPIRED
    assert decision.outcome["by"] == "system"
    assert events(decision, "decision.resolved").count() == 1
    assert not events(decision, "decision.answered").exists()
    assert decision.requests.get(address=ALICE).state == "closed"
    assert decision.deliveries.filter(kind="callback").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_no_publishing")
@pytest.mark.parametrize("round_", range(5))
def test_a_click_at_the_deadline_races_the_timeout_and_exactly_one_wins(agent, round_):
    # given alice clicks in the last moments before the deadline, just as the clock's tick for
    # that deadline runs (its `now` is past the deadline): either may win, never both
    decision = Refund(api_key=agent, approvers=(ALICE, BOB), callback_url=PUBLIC_CALLBACK)
    Decision.objects.filter(pk=decision.pk).update(
        expires_at=timezone.now() + timedelta(minutes=5), next_due_at=timezone.now() + timedelta(minutes=5)
    )
    alice = decision.requests.get(address=ALICE)
    deadline_passed = timezone.now() + timedelta(minutes=5, seconds=1)

    clicked, ticked = race(
        lambda: decision_answer(request_id=alice.pk, choice="approve", via="email").status,
        lambda: decision_tick(decision_id=decision.pk, now=deadline_passed),
    )

    decision = reload(decision)
    assert events(decision, "decision.resolved").count() == 1
    assert decision.deliveries.filter(kind="callback").count() == 1
    if clicked == Status.APPROVED:
        # the click held the row: the tick skipped it, and finds it resolved next time
        assert ticked is False
        assert decision.status == Status.APPROVED
        assert decision.outcome["by"] == ALICE
        assert decision_tick(decision_id=decision.pk, now=deadline_passed) is False
    else:
        assert isinstance(clicked, AlreadyResolved), clicked
        assert ticked is True
        assert decision.status == Status.EXPIRED
        assert decision.outcome["by"] == "system"
        assert not events(decision, "decision.answered").exists()
