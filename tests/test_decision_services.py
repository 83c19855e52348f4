"""The decision state machine, through decisions.services called directly.

Named actors: Acme's agent asks; alice and bob approve, carol is the backup or the next stage.
A decision leaves `pending` exactly once, and every final transition leaves exactly one
`decision.resolved` record in the audit trail.
"""

import hashlib
import json
from datetime import timedelta

import factory
import pytest
from django.utils import timezone

from audit.models import AuditEvent
from broker.errors import InvalidInput
from decisions.models import ApprovalRequest, ApproverGroup, Decision, Status
from decisions.services import (
    AlreadyAnswered,
    AlreadyResolved,
    DecisionSpec,
    decision_answer,
    decision_cancel,
    decision_create,
    decision_expire,
)
from notifications.models import Delivery
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import DecisionFactory

PUBLIC_CALLBACK = "https://93.184.215.14/hook"


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def agent(acme_key):
    """Acme's API key, as decision_create expects it."""
    return acme_key[0]


class Refund(DecisionFactory):
    details = factory.Dict({"amount": 120, "currency": "EUR"})


def answer(decision: Decision, address: str, choice: str = "approve", **fields) -> Decision:
    request = decision.requests.get(address=address, state=ApprovalRequest.State.PENDING)
    return decision_answer(request_id=request.pk, choice=choice, via="email", **fields)


def reload(decision: Decision) -> Decision:
    return Decision.objects.get(pk=decision.pk)


def request_states(decision: Decision) -> dict[str, str]:
    return dict(decision.requests.values_list("address", "state"))


def resolved_events(decision: Decision):
    return AuditEvent.objects.filter(decision_id=decision.pk, event="decision.resolved")


def make_overdue(decision: Decision) -> None:
    # Moving the deadline, not the clock: no sleeping in tests.
    Decision.objects.filter(pk=decision.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def independent_action_hash(action: str, details: dict) -> str:
    canonical = json.dumps(
        {"action": action, "details": details}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- create ---------------------------------------------------------------------------------


def test_create_asks_the_first_stage_and_records_it(agent):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB))

    decision = reload(decision)
    assert decision.status == Status.PENDING
    assert decision.id.startswith("dec_")
    assert decision.action_hash == independent_action_hash("Refund order #1042", decision.details)
    assert request_states(decision) == {ALICE: "pending", BOB: "pending"}
    events = list(AuditEvent.objects.filter(decision_id=decision.pk).values_list("event", "actor"))
    assert events == [
        ("decision.created", agent.actor),
        ("approver.asked", "system"),
        ("approver.asked", "system"),
    ]
    # one email delivery per approver, created in the same transaction
    assert decision.deliveries.filter(kind="email", purpose="ask").count() == 2


def test_unknown_group_is_invalid_input_naming_the_field_and_stores_nothing(agent):
    with pytest.raises(InvalidInput) as raised:
        Refund(api_key=agent, approvers=(ALICE, "group:finance"))

    assert raised.value.fields == {"approvers": ["unknown group 'finance'"]}
    assert not Decision.objects.exists()
    assert not AuditEvent.objects.exists()


def test_unknown_group_in_a_later_stage_names_that_stage(agent):
    with pytest.raises(InvalidInput) as raised:
        decision_create(
            api_key=agent,
            spec=DecisionSpec(
                action="Pay supplier invoice",
                stages=[
                    {"approvers": [ALICE], "quorum": "any"},
                    {"approvers": ["group:directors"], "quorum": "any"},
                ],
            ),
        )

    assert raised.value.fields == {"stages[1]": ["unknown group 'directors'"]}
    assert not Decision.objects.exists()


def test_a_group_asks_each_of_its_members(agent, acme):
    ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB])

    decision = Refund(api_key=agent, approvers=("group:finance", ALICE))

    # alice is asked once, through the group that mentioned her first
    assert sorted(decision.requests.values_list("address", "group")) == [(ALICE, "finance"), (BOB, "finance")]


def test_quorum_larger_than_the_approvers_is_invalid_input(agent):
    with pytest.raises(InvalidInput) as raised:
        Refund(api_key=agent, approvers=(ALICE, BOB), quorum=3)

    assert raised.value.fields == {"quorum": ["at most 2"]}
    assert not Decision.objects.exists()


# --- quorum -----------------------------------------------------------------------------------


def test_quorum_any_first_approval_resolves_it(agent):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB))

    answer(decision, ALICE)

    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.resolved_at is not None
    assert decision.outcome["status"] == "approved"
    assert decision.outcome["choice"] == "approve"
    assert decision.outcome["by"] == ALICE
    assert decision.outcome["via"] == "email"
    # bob was never needed: his request is closed, not left pending
    assert request_states(decision) == {ALICE: "answered", BOB: "closed"}


def test_quorum_all_waits_for_everyone(agent):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB), quorum="all")

    answer(decision, ALICE)
    assert reload(decision).status == Status.PENDING
    assert not resolved_events(decision).exists()

    answer(decision, BOB)
    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.outcome["by"] == BOB  # the approval that completed the quorum


def test_quorum_two_of_three(agent):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB, CAROL), quorum=2)

    answer(decision, ALICE)
    assert reload(decision).status == Status.PENDING

    answer(decision, BOB)
    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert request_states(decision) == {ALICE: "answered", BOB: "answered", CAROL: "closed"}


def test_a_deny_resolves_at_once_even_under_quorum_all(agent):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB, CAROL), quorum="all")
    answer(decision, ALICE)

    answer(decision, BOB, "deny", note="Customer is on the fraud list")

    decision = reload(decision)
    assert decision.status == Status.DENIED
    assert decision.outcome["by"] == BOB
    assert decision.outcome["choice"] == "deny"
    assert decision.outcome["note"] == "Customer is on the fraud list"
    assert request_states(decision)[CAROL] == "closed"


# --- other kinds of answers -------------------------------------------------------------------


def test_a_custom_option_resolves_it_as_responded_with_the_choice(agent):
    decision = Refund(api_key=agent, options=["approve", "deny", "escalate to legal"])

    answer(decision, ALICE, "escalate to legal")

    decision = reload(decision)
    assert decision.status == Status.RESPONDED
    assert decision.outcome["choice"] == "escalate to legal"
    assert decision.outcome["by"] == ALICE


def test_a_text_response_resolves_it_as_responded_with_the_text(agent):
    decision = Refund(api_key=agent, action="Which warehouse should ship order #1042?", response_type="text")

    answer(decision, ALICE, choice="", text="Ship from Rotterdam, Hamburg is out of stock.")

    decision = reload(decision)
    assert decision.status == Status.RESPONDED
    assert decision.outcome["text"] == "Ship from Rotterdam, Hamburg is out of stock."
    assert decision.outcome["choice"] is None


def test_a_text_response_without_text_is_invalid(agent):
    decision = Refund(api_key=agent, response_type="text")

    with pytest.raises(InvalidInput) as raised:
        answer(decision, ALICE, choice="", text="   ")

    assert "text" in raised.value.fields
    assert reload(decision).status == Status.PENDING


def test_approving_with_edited_details_carries_them_into_the_outcome(agent):
    # given a refund alice may adjust before approving
    original = {"amount": 120, "currency": "EUR", "customer": "Initech"}
    decision = Refund(api_key=agent, details=original, allow_edit=True)
    edited = {"amount": 80, "currency": "EUR", "customer": "Initech"}

    answer(decision, ALICE, details=edited)

    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.outcome["details"] == edited
    # the outcome's hash covers what was approved, not what was asked
    assert decision.outcome["action_hash"] == independent_action_hash("Refund order #1042", edited)
    assert decision.outcome["action_hash"] != decision.action_hash
    # what was put to the approver stays on record
    assert decision.details == original
    assert decision.action_hash == independent_action_hash("Refund order #1042", original)


def test_outcome_hash_without_edit_is_the_asked_hash(agent):
    decision = Refund(api_key=agent)

    answer(decision, ALICE)

    decision = reload(decision)
    assert decision.outcome["details"] == decision.details
    assert decision.outcome["action_hash"] == decision.action_hash


def test_editing_details_that_are_not_editable_is_invalid_input(agent):
    decision = Refund(api_key=agent)  # allow_edit defaults to False

    with pytest.raises(InvalidInput) as raised:
        answer(decision, ALICE, details={"amount": 1})

    assert raised.value.fields == {"details": ["not editable"]}
    assert reload(decision).status == Status.PENDING
    assert request_states(decision) == {ALICE: "pending"}


def test_editing_details_while_denying_is_invalid_input(agent):
    # An edit only means something as "approve, but like this".
    decision = Refund(api_key=agent, allow_edit=True)

    with pytest.raises(InvalidInput) as raised:
        answer(decision, ALICE, "deny", details={"amount": 1})

    assert "details" in raised.value.fields
    assert reload(decision).status == Status.PENDING


def test_a_choice_not_among_the_options_is_invalid_input(agent):
    decision = Refund(api_key=agent)

    with pytest.raises(InvalidInput) as raised:
        answer(decision, ALICE, "maybe")

    assert "choice" in raised.value.fields
    assert reload(decision).status == Status.PENDING
    assert request_states(decision) == {ALICE: "pending"}


def test_answering_twice_is_already_answered(agent):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB), quorum="all")
    request = decision.requests.get(address=ALICE)
    decision_answer(request_id=request.pk, choice="approve", via="email")

    # alice clicks again (another device, a double click): it does not count twice
    with pytest.raises(AlreadyAnswered):
        decision_answer(request_id=request.pk, choice="approve", via="slack")

    decision = reload(decision)
    assert decision.status == Status.PENDING
    assert decision.requests.get(address=ALICE).answered_via == "email"


def test_answering_a_resolved_decision_is_already_resolved(agent):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB))
    answer(decision, ALICE)
    bob_request = decision.requests.get(address=BOB)

    with pytest.raises(AlreadyResolved) as raised:
        decision_answer(request_id=bob_request.pk, choice="deny", via="email")

    assert raised.value.decision.status == Status.APPROVED
    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.outcome["by"] == ALICE
    assert decision.requests.get(address=BOB).state == "closed"


# --- stages -----------------------------------------------------------------------------------


def test_two_stages_ask_the_second_only_after_the_first_approved(agent):
    # given a manager sign-off (alice and bob, both) and then a director (carol)
    decision, _ = decision_create(
        api_key=agent,
        spec=DecisionSpec(
            action="Sign the Globex contract",
            stages=[
                {"approvers": [ALICE, BOB], "quorum": "all"},
                {"approvers": [CAROL], "quorum": "any"},
            ],
        ),
    )
    assert list(decision.requests.values_list("address", "stage")) == [(ALICE, 0), (BOB, 0)]

    # when only alice approved, stage 1 is not complete and carol is not asked yet
    answer(decision, ALICE)
    assert not decision.requests.filter(stage=1).exists()
    assert reload(decision).current_stage == 0

    # when bob approves too, carol is asked, and the decision still waits for her
    answer(decision, BOB)
    decision = reload(decision)
    assert decision.status == Status.PENDING
    assert decision.current_stage == 1
    assert list(decision.requests.filter(stage=1).values_list("address", "state")) == [(CAROL, "pending")]
    assert AuditEvent.objects.filter(
        decision_id=decision.pk, event="approver.asked", payload__contains='"stage":1'
    ).exists()

    # then carol's approval resolves it
    answer(decision, CAROL)
    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.outcome["by"] == CAROL
    assert resolved_events(decision).count() == 1


def test_a_deny_in_the_first_stage_never_asks_the_second(agent):
    decision, _ = decision_create(
        api_key=agent,
        spec=DecisionSpec(
            action="Sign the Globex contract",
            stages=[{"approvers": [ALICE], "quorum": "any"}, {"approvers": [CAROL], "quorum": "any"}],
        ),
    )

    answer(decision, ALICE, "deny")

    assert reload(decision).status == Status.DENIED
    assert not decision.requests.filter(address=CAROL).exists()


# --- timeout ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_timeout", "status", "choice"),
    [
        ("expire", Status.EXPIRED, None),
        ("deny", Status.DENIED, "deny"),
        ("approve", Status.APPROVED, "approve"),
    ],
)
def test_expire_resolves_as_on_timeout_asks(agent, on_timeout, status, choice):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB), on_timeout=on_timeout)
    make_overdue(decision)

    result = decision_expire(decision_id=decision.pk)

    assert result is not None
    decision = reload(decision)
    assert decision.status == status
    assert decision.outcome["choice"] == choice
    assert decision.outcome["by"] == "system"
    assert decision.outcome["via"] == "timeout"
    assert set(request_states(decision).values()) == {"closed"}
    event = resolved_events(decision).get()
    assert (event.actor, event.channel) == ("system", "timeout")


def test_expire_before_the_deadline_does_nothing(agent):
    decision = Refund(api_key=agent, timeout_minutes=30)

    assert decision_expire(decision_id=decision.pk) is None

    decision = reload(decision)
    assert decision.status == Status.PENDING
    assert decision.outcome is None
    assert not resolved_events(decision).exists()


def test_expire_of_a_resolved_decision_does_nothing(agent):
    # given alice approved just before the deadline passed
    decision = Refund(api_key=agent)
    answer(decision, ALICE)
    make_overdue(decision)

    assert decision_expire(decision_id=decision.pk) is None

    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.outcome["by"] == ALICE
    assert resolved_events(decision).count() == 1


def test_expire_of_an_unknown_decision_does_nothing(agent):
    assert decision_expire(decision_id="dec_doesnotexist") is None


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_resolves_it_as_cancelled_by_the_agent(agent):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB))

    decision_cancel(decision=decision, actor=agent.actor)

    decision = reload(decision)
    assert decision.status == Status.CANCELLED
    assert decision.outcome["by"] == agent.actor
    assert decision.outcome["via"] == "api"
    assert set(request_states(decision).values()) == {"closed"}


def test_cancel_of_a_resolved_decision_is_already_resolved(agent):
    decision = Refund(api_key=agent)
    answer(decision, ALICE, "deny")

    with pytest.raises(AlreadyResolved):
        decision_cancel(decision=reload(decision), actor=agent.actor)

    assert reload(decision).status == Status.DENIED


def test_an_approver_cannot_answer_a_cancelled_decision(agent):
    decision = Refund(api_key=agent)
    decision_cancel(decision=decision, actor=agent.actor)

    # alice's request was closed by the cancel; answering through it is refused
    request = decision.requests.get(address=ALICE)
    with pytest.raises(AlreadyResolved):
        decision_answer(request_id=request.pk, choice="approve", via="email")

    assert reload(decision).status == Status.CANCELLED


# --- one audit record and one callback per final transition ------------------------------------


def _approve(agent, decision):
    answer(decision, ALICE)


def _deny(agent, decision):
    answer(decision, ALICE, "deny")


def _respond(agent, decision):
    answer(decision, ALICE, "escalate to legal")


def _expire(agent, decision):
    make_overdue(decision)
    decision_expire(decision_id=decision.pk)


def _cancel(agent, decision):
    decision_cancel(decision=decision, actor=agent.actor)


FINAL_TRANSITIONS = [
    pytest.param(_approve, Status.APPROVED, id="approve"),
    pytest.param(_deny, Status.DENIED, id="deny"),
    pytest.param(_respond, Status.RESPONDED, id="respond"),
    pytest.param(_expire, Status.EXPIRED, id="expire"),
    pytest.param(_cancel, Status.CANCELLED, id="cancel"),
]


@pytest.mark.parametrize(("resolve", "status"), FINAL_TRANSITIONS)
def test_each_final_transition_writes_exactly_one_resolved_event(agent, resolve, status):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB), options=["approve", "deny", "escalate to legal"])

    resolve(agent, decision)
    # a late attempt by everyone else changes nothing and records nothing
    make_overdue(decision)
    assert decision_expire(decision_id=decision.pk) is None
    with pytest.raises(AlreadyResolved):
        decision_cancel(decision=reload(decision), actor=agent.actor)

    decision = reload(decision)
    assert decision.status == status
    event = resolved_events(decision).get()
    assert json.loads(event.payload)["status"] == status
    assert (event.actor, event.channel) == (decision.outcome["by"], decision.outcome["via"])
    assert json.loads(event.payload)["action_hash"] == decision.outcome["action_hash"]


@pytest.mark.parametrize(("resolve", "status"), FINAL_TRANSITIONS)
def test_a_callback_is_enqueued_on_resolution_when_a_url_is_set(agent, resolve, status):
    decision = Refund(
        api_key=agent, options=["approve", "deny", "escalate to legal"], callback_url=PUBLIC_CALLBACK
    )
    callbacks = Delivery.objects.filter(decision_id=decision.pk, kind=Delivery.Kind.CALLBACK)
    assert not callbacks.exists()  # nothing to report while pending

    resolve(agent, decision)

    callback = callbacks.get()
    assert callback.purpose == Delivery.Purpose.OUTCOME
    assert callback.status == Delivery.Status.PENDING
    assert reload(decision).status == status


@pytest.mark.parametrize(("resolve", "status"), FINAL_TRANSITIONS)
def test_no_callback_without_a_url(agent, resolve, status):
    decision = Refund(api_key=agent, options=["approve", "deny", "escalate to legal"])

    resolve(agent, decision)

    assert reload(decision).status == status
    assert not Delivery.objects.filter(decision_id=decision.pk, kind=Delivery.Kind.CALLBACK).exists()


def test_a_pending_answer_enqueues_no_callback(agent):
    decision = Refund(api_key=agent, approvers=(ALICE, BOB), quorum="all", callback_url=PUBLIC_CALLBACK)

    answer(decision, ALICE)

    assert not Delivery.objects.filter(decision_id=decision.pk, kind=Delivery.Kind.CALLBACK).exists()
