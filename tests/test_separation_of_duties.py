"""Separation of duties. bob asks the agent to wire money (`requested_by`): he is never asked,
can never approve it, and a decision only he could approve is refused. By default nobody
approves two stages of one decision (alice the manager cannot also sign as director).
"""

import pytest
from django.test import Client

from decisions.models import ApprovalRequest, ApproverGroup, Decision, Status
from decisions.services import SeparationOfDuties, decision_answer
from tests.conftest import ALICE, BOB, CAROL
from tests.portal_helpers import sign_in_token, tasks_run_here  # noqa: F401 (fixture)

pytestmark = pytest.mark.postgres


def create(api, **body):
    return api.post("/decisions", {"action": "Wire $9,000 to Initech", **body}, format="json")


def request_of(decision_id: str, address: str, stage: int = 0) -> ApprovalRequest:
    return ApprovalRequest.objects.get(decision_id=decision_id, address=address, stage=stage)


def test_the_requester_is_not_asked(api):
    response = create(api, approvers=[ALICE, BOB], requested_by="Bob@Example.com")
    assert response.status_code == 201
    body = response.json()
    assert body["requested_by"] == BOB
    assert [r["address"] for r in body["requests"]] == [ALICE]


def test_the_requester_is_not_asked_through_a_group(api, acme):
    ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB])
    body = create(api, approver="group:finance", requested_by=BOB).json()
    assert [r["address"] for r in body["requests"]] == [ALICE]


@pytest.mark.parametrize(
    "route",
    [
        {"approver": BOB},
        {"stages": [{"approvers": [ALICE], "quorum": "any"}, {"approvers": [BOB], "quorum": "any"}]},
    ],
)
def test_a_decision_only_the_requester_could_approve_is_a_400(api, route):
    response = create(api, requested_by=BOB, **route)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == f"{BOB} asked for this decision and cannot approve it: name someone else."
    assert list(error["fields"].values()) == [["only the requester"]]
    assert not Decision.objects.exists()


@pytest.mark.parametrize("value", ["bob", "", 7, None, "b" * 330 + "@example.com"])
def test_a_bad_requested_by_is_a_clear_400(api, value):
    response = create(api, approver=ALICE, requested_by=value)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["requested_by"]


def test_the_requester_can_never_approve_even_if_asked(api):
    # Belt and braces: should bob hold a request (recorded as the requester only afterwards),
    # his approval is still refused.
    decision_id = create(api, approvers=[ALICE, BOB]).json()["id"]
    Decision.objects.filter(pk=decision_id).update(requested_by=BOB)
    with pytest.raises(SeparationOfDuties, match="someone else must approve it"):
        decision_answer(request_id=request_of(decision_id, BOB).pk, choice="approve", via="email")
    assert Decision.objects.get(pk=decision_id).status == Status.PENDING


TWO_STAGES = [
    {"approvers": [ALICE, BOB], "quorum": "any"},
    {"approvers": [ALICE, CAROL], "quorum": "any"},
]


def test_nobody_approves_two_stages(api):
    decision_id = create(api, stages=TWO_STAGES).json()["id"]
    decision_answer(request_id=request_of(decision_id, ALICE, 0).pk, choice="approve", via="email")

    with pytest.raises(SeparationOfDuties, match="approved an earlier stage"):
        decision_answer(request_id=request_of(decision_id, ALICE, 1).pk, choice="approve", via="email")
    # She may still deny it; carol approves it.
    decision_answer(request_id=request_of(decision_id, CAROL, 1).pk, choice="approve", via="email")
    decision = Decision.objects.get(pk=decision_id)
    assert (decision.status, decision.outcome["by"]) == (Status.APPROVED, CAROL)


def test_an_agent_may_allow_one_person_to_approve_two_stages(api):
    decision_id = create(api, stages=TWO_STAGES, distinct_stage_approvers=False).json()["id"]
    decision_answer(request_id=request_of(decision_id, ALICE, 0).pk, choice="approve", via="email")
    decision_answer(request_id=request_of(decision_id, ALICE, 1).pk, choice="approve", via="email")
    assert Decision.objects.get(pk=decision_id).status == Status.APPROVED


def test_two_stages_with_the_same_sole_approver_are_a_400_unless_allowed(api):
    stages = [{"approvers": [ALICE], "quorum": "any"}, {"approvers": [ALICE], "quorum": "any"}]
    refused = create(api, stages=stages)
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {"stages[1]": ["the same sole approver as an earlier stage"]}
    assert create(api, stages=stages, distinct_stage_approvers=False).status_code == 201


@pytest.mark.usefixtures("tasks_run_here")
def test_the_portal_says_why_and_answers_nothing(api, mailoutbox):
    decision_id = create(api, stages=TWO_STAGES).json()["id"]
    alice = Client()
    alice.post("/inbox/sign-in", {"address": ALICE})
    alice.post(f"/inbox/sign-in/{sign_in_token(mailoutbox, ALICE)}")
    assert alice.post(f"/inbox/{decision_id}/answer", {"choice": "approve"}).status_code == 302

    response = alice.post(f"/inbox/{decision_id}/answer", {"choice": "approve"})
    assert response.status_code == 403
    assert "approved an earlier stage" in response.content.decode()
    assert Decision.objects.get(pk=decision_id).current_stage == 1
    assert Decision.objects.get(pk=decision_id).status == Status.PENDING
