"""The blocking client: what it sends, what it returns, and request_approval's wait.

Acme's agent talks to the fake service (fake_service.py); alice answers through it.
"""

import json
from datetime import datetime

import httpx
import pytest
from countersign import ApprovalTimeout, Countersign, CountersignError, Decision, Outcome
from fake_service import ALICE, API_KEY, BASE_URL, BOB


def test_create_sends_only_what_the_agent_chose_so_a_policy_can_fill_in_the_rest(client, service):
    decision = client.create(
        "Refund $120 to order #1042",
        details={"amount": 120, "customer": "Ada"},
        approver=ALICE,
        urgency=None,  # None means "not sent": the policy's urgency applies
    )

    sent = service.seen[-1]
    assert sent.method == "POST"
    assert sent.url.path == "/decisions"
    assert json.loads(sent.content) == {
        "action": "Refund $120 to order #1042",
        "details": {"amount": 120, "customer": "Ada"},
        "approver": ALICE,
    }
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["idempotency-key"].startswith("cs-")
    assert sent.headers["user-agent"].startswith("countersign-python/")
    assert isinstance(decision, Decision)
    assert decision.id.startswith("dec_")
    assert decision.is_pending
    assert decision.outcome is None
    assert decision.details == {"amount": 120, "customer": "Ada"}
    assert isinstance(decision.created_at, datetime)
    assert decision.requests[0].address == ALICE


def test_the_portal_fields_are_sent_as_given_and_read_back(client, service):
    # given: Carol asked the agent for this refund; only a passkey will do, one person may
    # sign both stages
    decision = client.create(
        "Refund $120 to order #1042",
        approver=ALICE,
        verification="passkey",
        requested_by="carol@example.com",
        distinct_stage_approvers=False,
    )

    assert json.loads(service.seen[-1].content) == {
        "action": "Refund $120 to order #1042",
        "approver": ALICE,
        "verification": "passkey",
        "requested_by": "carol@example.com",
        "distinct_stage_approvers": False,
    }
    assert decision.verification == "passkey"
    assert decision.requested_by == "carol@example.com"
    assert decision.distinct_stage_approvers is False


def test_left_out_the_portal_fields_are_not_sent_and_read_back_as_the_service_defaults(client, service):
    decision = client.create("Deploy 4.2", approver=ALICE, verification=None, requested_by=None)

    assert json.loads(service.seen[-1].content) == {"action": "Deploy 4.2", "approver": ALICE}
    assert decision.verification == "link"
    assert decision.requested_by is None
    assert decision.distinct_stage_approvers is True


def test_the_outcome_says_how_the_person_who_answered_was_verified(client, service):
    by_passkey = client.create("Deploy 4.2", approver=ALICE, verification="passkey")
    by_link = client.create("Deploy 4.3", approver=ALICE)
    unanswered = client.create("Deploy 4.4", approver=ALICE)
    service.answer(by_passkey.id, "approved", via="web", verified="passkey")
    service.answer(by_link.id, "denied")
    service.answer(unanswered.id, "expired", by="system", via="timeout")

    assert client.get(by_passkey.id).outcome.verified == "passkey"
    assert client.get(by_link.id).outcome.verified == "link"
    assert client.get(unanswered.id).outcome.verified is None  # nobody answered


def test_a_delegate_asked_for_an_away_approver_says_on_whose_behalf(client, service):
    # given: alice is away; bob answers for her
    service.delegates = {ALICE: BOB}
    decision = client.create("Deploy 4.2", approver=ALICE)
    plain = client.create("Deploy 4.3", approver=BOB)

    [asked] = client.get(decision.id).requests
    assert asked.address == BOB
    assert asked.on_behalf_of == ALICE
    assert client.get(plain.id).requests[0].on_behalf_of is None


def test_a_misspelt_field_fails_before_anything_is_sent(client, service):
    with pytest.raises(TypeError, match="timeout_minute"):
        client.create("Deploy 4.2", approver=ALICE, timeout_minute=30)  # type: ignore[call-arg]

    assert service.seen == []


def test_each_create_gets_its_own_idempotency_key_unless_the_caller_gives_one(client, service):
    client.create("Deploy 4.2", approver=ALICE)
    client.create("Deploy 4.2", approver=ALICE)
    first = client.create("Deploy 4.3", approver=ALICE, idempotency_key="deploy-4.3")
    again = client.create("Deploy 4.3", approver=ALICE, idempotency_key="deploy-4.3")

    keys = [request.headers["idempotency-key"] for request in service.seen]
    assert keys[0] != keys[1]
    assert keys[2:] == ["deploy-4.3", "deploy-4.3"]
    assert again.id == first.id  # the service replayed the first decision
    assert len(service.decisions) == 3


def test_get_returns_the_outcome_once_alice_has_answered(client, service):
    decision = client.create("Deploy 4.2", approver=ALICE, allow_edit=True, details={"version": "4.2"})
    service.answer(decision.id, "approved", note="go ahead", details={"version": "4.2.1"})

    resolved = client.get(decision.id)

    assert resolved.status == "approved"
    outcome = resolved.outcome
    assert isinstance(outcome, Outcome)
    assert outcome.approved
    assert outcome.by == ALICE
    assert outcome.via == "email"
    assert outcome.note == "go ahead"
    assert outcome.details == {"version": "4.2.1"}
    assert outcome.edited  # what was approved is not what was asked
    assert outcome.as_dict()["decision_id"] == decision.id


def test_wait_long_polls_until_the_decision_is_resolved(client, service):
    decision = client.create("Deploy 4.2", approver=ALICE)
    polls = []

    def alice_clicks_on_the_second_poll(decision_id):
        polls.append(decision_id)
        if len(polls) == 2:
            service.answer(decision_id, "denied", note="not on a Friday")

    service.while_waiting = alice_clicks_on_the_second_poll

    resolved = client.wait(decision.id)

    assert resolved.status == "denied"
    assert polls == [decision.id, decision.id]
    long_polls = [r for r in service.seen if r.method == "GET"]
    assert [r.url.params["wait"] for r in long_polls] == ["60", "60"]


def test_request_approval_blocks_until_resolved_and_returns_the_outcome(client, service):
    created = []
    service.while_waiting = lambda decision_id: service.answer(decision_id, "approved")

    outcome = client.request_approval(
        "Refund $120 to order #1042", details={"amount": 120}, approver=ALICE, on_created=created.append
    )

    assert outcome.approved
    assert outcome.by == ALICE
    assert [d.status for d in created] == ["pending"]
    assert outcome.decision_id == created[0].id


def test_request_approval_that_nobody_answers_in_time_raises_with_the_pending_decision(client, service):
    with pytest.raises(ApprovalTimeout) as raised:
        client.request_approval("Deploy 4.2", approver=ALICE, timeout=0)

    assert raised.value.decision.is_pending
    assert raised.value.decision.id == service.only()["id"]


def test_an_expired_decision_is_an_outcome_not_an_error(client, service):
    service.while_waiting = lambda decision_id: service.answer(
        decision_id, "expired", by="system", via="timeout"
    )

    outcome = client.request_approval("Deploy 4.2", approver=ALICE)

    assert outcome.status == "expired"
    assert not outcome.approved
    assert not outcome.answered_in_time


def test_cancel_returns_the_cancelled_decision(client, service):
    decision = client.create("Deploy 4.2", approver=ALICE)

    cancelled = client.cancel(decision.id)

    assert cancelled.status == "cancelled"
    assert service.seen[-1].url.path == f"/decisions/{decision.id}/cancel"


def test_list_gives_one_page_and_iter_decisions_follows_the_cursors(client, service):
    for number in range(5):
        client.create(f"Deploy 4.{number}", approver=BOB)
    service.answer("dec_0002", "approved", by=BOB)

    page = client.list(limit=2)
    every = list(client.iter_decisions(page_size=2))
    approved = client.list(status="approved")

    assert [d.action for d in page.results] == ["Deploy 4.4", "Deploy 4.3"]
    assert page.next_cursor == "2"
    assert [d.id for d in every] == ["dec_0005", "dec_0004", "dec_0003", "dec_0002", "dec_0001"]
    assert [d.id for d in approved.results] == ["dec_0002"]
    assert approved.next_cursor is None


def test_the_client_reads_its_url_and_key_from_the_environment(monkeypatch, service):
    monkeypatch.setenv("COUNTERSIGN_URL", BASE_URL + "/")
    monkeypatch.setenv("COUNTERSIGN_API_KEY", API_KEY)

    with Countersign(transport=httpx.MockTransport(service.handle)) as agent:
        decision = agent.create("Deploy 4.2", approver=ALICE)

    assert agent.settings.base_url == BASE_URL
    assert decision.status == "pending"


def test_without_an_api_key_the_client_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("COUNTERSIGN_API_KEY", raising=False)

    with pytest.raises(CountersignError, match="COUNTERSIGN_API_KEY"):
        Countersign(BASE_URL)
