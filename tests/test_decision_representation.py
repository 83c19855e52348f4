"""The decision object is built by hand (decision_representation) for speed; DecisionOutput's
declared fields stay its schema. Here DRF's own field-by-field rendering of those fields is the
reference: for decisions in every shape, the hand-built object must be the same, key for key."""

import pytest
from rest_framework import serializers

from decisions.models import ApprovalRequest, Decision, Policy
from decisions.serializers import DecisionOutput, decision_representation
from decisions.services import decision_answer, decision_cancel
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import DecisionFactory

pytestmark = pytest.mark.django_db


def drf_rendering(decision: Decision, requests=None) -> dict:
    """What DRF's ModelSerializer makes of DecisionOutput's fields, method fields included."""
    output = DecisionOutput(decision, context={"requests": requests})
    return dict(serializers.ModelSerializer.to_representation(output, decision))


def assert_same_object(decision: Decision, requests=None) -> None:
    reference = drf_rendering(decision, requests)
    built = decision_representation(decision, requests=requests)
    assert list(built) == list(reference)  # same keys, same order
    assert built == reference
    # And the values are of the same types (5 and 5.0 are equal, but render differently).
    assert {k: type(v) for k, v in built.items()} == {k: type(v) for k, v in reference.items()}
    for key in ("escalation", "reminders", "stages"):
        assert repr(built[key]) == repr(reference[key])


def fresh(decision: Decision) -> Decision:
    return Decision.objects.get(pk=decision.pk)


def test_a_new_decision_as_the_create_returns_it_and_as_read_back(acme_key):
    decision = DecisionFactory(api_key=acme_key[0])
    assert_same_object(decision, requests=decision.asked_at_creation)
    assert_same_object(fresh(decision))
    assert decision_representation(decision, requests=decision.asked_at_creation) == (
        decision_representation(fresh(decision))
    )


def test_every_optional_part_filled_in(acme_key):
    decision = DecisionFactory(
        api_key=acme_key[0],
        context="Order 1042, paid by card",
        details={"amount": 1200, "currency": "EUR", "lines": [{"sku": "A", "qty": 2}]},
        options=["approve", "deny", "escalate"],
        allow_edit=True,
        urgency="high",
        timeout_minutes=120,
        reminders=[30, 45.5],
        escalation=[{"after_minutes": 60, "approvers": [CAROL]}],
        escalation_repeat=2,
        on_timeout="approve",
        requested_by="dave@example.com",
        callback_url="https://agent.example.com/hook",
        metadata={"run": "r-1", "nested": {"k": [1, 2.5, None, True]}},
        approvers=[ALICE, BOB],
        quorum=2,
    )
    assert_same_object(fresh(decision))


def test_stages_text_responses_and_no_callback(acme_key):
    decision = DecisionFactory(
        api_key=acme_key[0],
        response_type="text",
        stages=[{"approvers": [ALICE], "quorum": "any"}, {"approvers": [BOB, CAROL], "quorum": "all"}],
    )
    assert_same_object(fresh(decision))


def test_answered_with_a_note_and_cancelled(acme_key):
    answered = DecisionFactory(api_key=acme_key[0], approvers=[ALICE])
    request = ApprovalRequest.objects.get(decision=answered)
    decision_answer(request_id=request.pk, choice="approve", note="Checked the order.", via="email")
    assert_same_object(fresh(answered))

    cancelled = DecisionFactory(api_key=acme_key[0], approvers=[BOB])
    decision_cancel(decision=cancelled, actor="api:test")
    assert_same_object(fresh(cancelled))


def test_decided_at_once_by_a_policy_rule(acme, acme_key):
    Policy.objects.create(organization=acme, name="small-refunds", action=Policy.Action.APPROVE)
    decision = DecisionFactory(api_key=acme_key[0])
    assert decision.policy == {"name": "small-refunds", "action": "approve"}
    assert_same_object(decision, requests=decision.asked_at_creation)
    assert_same_object(fresh(decision))


def test_a_prefetched_list_renders_like_single_reads(acme_key):
    for approvers in ([ALICE], [ALICE, BOB]):
        DecisionFactory(api_key=acme_key[0], approvers=approvers)
    listed = DecisionOutput(Decision.objects.prefetch_related("requests").order_by("created_at"), many=True)
    assert listed.data == [decision_representation(fresh(d)) for d in Decision.objects.order_by("created_at")]
