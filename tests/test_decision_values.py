"""The typed values around decision_create and a resolution: DecisionSpec and Outcome.

A DecisionSpec refuses a wrong type when it is built, not deep in the service; the API's
serializer builds one from what the agent sent. An Outcome is the stored outcome JSON, typed:
reading it and writing it back gives the same JSON, key for key, whichever way it was resolved.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from decisions.models import Decision, Policy
from decisions.outcomes import Outcome
from decisions.serializers import decision_spec_from
from decisions.services import DecisionSpec, decision_answer, decision_cancel, decision_expire
from tests.conftest import ALICE, BOB
from tests.factories import DecisionFactory

pytestmark = pytest.mark.django_db

# Issue 16 adds "verified" (how the person who answered was verified), after the others.
OUTCOME_KEYS = ["status", "choice", "text", "note", "by", "via", "at", "details", "action_hash", "verified"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout_minutes", "60"),
        ("allow_edit", 1),
        ("escalation_repeat", True),
        ("details", None),
        ("stages", ({"approvers": [ALICE], "quorum": "any"},)),
    ],
)
def test_a_spec_of_the_wrong_type_is_refused_naming_the_field(field, value):
    with pytest.raises(TypeError, match=rf"DecisionSpec\.{field}:"):
        DecisionSpec(action="Refund order #1042", **{field: value})


def test_a_spec_with_an_unknown_choice_is_refused():
    with pytest.raises(ValueError, match=r"DecisionSpec\.urgency: 'urgent'"):
        DecisionSpec(action="Refund order #1042", urgency="urgent")


def test_the_serializer_builds_the_spec_the_agent_sent():
    body = {"action": "Refund order #1042", "approver": ALICE, "timeout_minutes": 30, "response": "choice"}
    spec = decision_spec_from(body)

    assert spec == DecisionSpec(
        action="Refund order #1042",
        stages=[{"approvers": [ALICE], "quorum": "any"}],
        timeout_minutes=30,
        explicit=frozenset(body),
    )


def resolved_four_ways(api_key) -> list[Decision]:
    # (the rule first: an organization's rules are cached once read)
    Policy.objects.create(
        organization=api_key.organization,
        name="small-refunds",
        conditions=[{"field": "details.amount", "op": "lt", "value": 50}],
        action=Policy.Action.APPROVE,
    )
    approved = DecisionFactory(api_key=api_key, allow_edit=True, details={"amount": 120})
    decision_answer(
        request_id=approved.requests.get().pk,
        choice="approve",
        note="less, please",
        details={"amount": 100},
        via="email",
    )
    cancelled = decision_cancel(decision=DecisionFactory(api_key=api_key), actor="acme agent")
    expired = DecisionFactory(api_key=api_key, approvers=[BOB])
    Decision.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    decision_expire(decision_id=expired.pk)
    by_policy = DecisionFactory(api_key=api_key, details={"amount": 20})
    return [Decision.objects.get(pk=d.pk) for d in (approved, cancelled, expired, by_policy)]


def test_an_outcome_read_and_written_back_is_the_stored_json(acme_key):
    for decision in resolved_four_ways(acme_key[0]):
        outcome = decision.resolution

        assert isinstance(outcome, Outcome)
        assert outcome.to_json() == decision.outcome
        # the keys in the order the outcome was always written (jsonb keeps its own order)
        assert list(outcome.to_json()) == OUTCOME_KEYS


def test_the_typed_outcome_says_who_resolved_it_how(acme_key):
    approved, cancelled, expired, by_policy = (d.resolution for d in resolved_four_ways(acme_key[0]))

    assert (approved.status, approved.by, approved.via) == ("approved", ALICE, "email")
    assert (approved.note, approved.details) == ("less, please", {"amount": 100})
    assert (cancelled.status, cancelled.by, cancelled.via) == ("cancelled", "acme agent", "api")
    assert (expired.status, expired.by, expired.via) == ("expired", "system", "timeout")
    assert (by_policy.status, by_policy.by, by_policy.via) == ("approved", "policy:small-refunds", "policy")


def test_a_pending_decision_has_no_outcome(acme_key):
    assert DecisionFactory(api_key=acme_key[0]).resolution is None
