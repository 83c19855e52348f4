"""A pooled, reused serializer validates exactly as a fresh one: same data, same errors, and
nothing of one body carried into the next, in any order and from several threads at once."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework.exceptions import ValidationError

from broker.reused_serializers import ReusedSerializer
from decisions.serializers import DecisionCreateInput
from tests.conftest import ALICE, BOB

BODIES = [
    {"action": "Refund order #1042", "approver": ALICE},
    {"action": "Refund", "stages": [{"approvers": [ALICE]}, {"approvers": [BOB], "quorum": "all"}]},
    {"action": "", "approver": ALICE},  # blank action
    {"action": "Refund", "approvers": [ALICE], "stages": [{"approvers": [BOB]}]},  # two routes
    {"action": "Refund", "stages": [{"approvers": ["not an address"], "quorum": 0}]},  # nested errors
    {"action": "Refund", "timeout_minute": 5},  # unknown field
    {
        "action": "Deploy",
        "approvers": [ALICE, BOB],
        "quorum": 2,
        "escalation": [{"after_minutes": 10, "approvers": ["carol@example.com"]}],
        "reminders": [5, 1, 5],
        "response": "choice",
        "options": ["approve", "deny"],
        "allow_edit": True,
        "metadata": {"run": 7},
    },
    {"action": "Refund", "escalation": [{"after_minutes": 10, "approvers": [ALICE]}, {"after_minutes": 5}]},
    {"action": "Write", "approver": ALICE, "response": "text", "options": ["a"]},
    None,
    ["not", "an", "object"],
    "a string",
]


def fresh_outcome(body):
    serializer = DecisionCreateInput(data=body)
    try:
        serializer.is_valid(raise_exception=True)
    except ValidationError as exc:
        return ("invalid", exc.detail)
    return ("valid", serializer.validated_data)


def reused_outcome(reused: ReusedSerializer, body):
    try:
        return ("valid", reused.validated_data(body))
    except ValidationError as exc:
        return ("invalid", exc.detail)


def test_every_body_gives_what_a_fresh_serializer_gives_in_any_order():
    reused = ReusedSerializer(DecisionCreateInput)
    expected = [fresh_outcome(body) for body in BODIES]
    assert {outcome[0] for outcome in expected} == {"valid", "invalid"}
    for order in (BODIES, BODIES[::-1], BODIES * 2):
        assert [reused_outcome(reused, body) for body in order] == [fresh_outcome(body) for body in order]
    assert len(reused._idle) == 1  # one thread: one instance, reused throughout


@pytest.mark.parametrize("body", [BODIES[0], BODIES[6]])
def test_the_validated_data_is_the_callers_own(body):
    reused = ReusedSerializer(DecisionCreateInput)
    first = reused.validated_data(body)
    first["stages"].append("changed by the caller")
    assert reused.validated_data(body) == fresh_outcome(body)[1]


def test_threads_validating_at_once_each_get_their_own_answer():
    reused = ReusedSerializer(DecisionCreateInput)
    work = BODIES * 20
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda body: reused_outcome(reused, body), work))
    assert outcomes == [fresh_outcome(body) for body in work]
    assert 1 <= len(reused._idle) <= 8
