"""The asyncio client does what the blocking one does, awaited."""

import asyncio
import json

import httpx
import pytest
from countersign import ApprovalTimeout, NotFound
from fake_service import ALICE


def test_request_approval_awaits_alices_answer(async_client, service):
    service.while_waiting = lambda decision_id: service.answer(decision_id, "approved", note="fine")
    created = []

    async def note_it(decision):
        created.append(decision.id)

    async def ask():
        async with async_client:
            return await async_client.request_approval(
                "Deploy 4.2", approver=ALICE, details={"version": "4.2"}, on_created=note_it
            )

    outcome = asyncio.run(ask())

    assert outcome.approved
    assert outcome.note == "fine"
    assert created == [outcome.decision_id]
    assert json.loads(service.seen[0].content) == {
        "action": "Deploy 4.2",
        "approver": ALICE,
        "details": {"version": "4.2"},
    }


def test_a_dropped_connection_is_retried_with_the_same_idempotency_key(async_client, service):
    service.trouble.append(httpx.ConnectError("refused"))

    decision = asyncio.run(async_client.create("Deploy 4.2", approver=ALICE))

    keys = {request.headers["idempotency-key"] for request in service.seen}
    assert len(service.seen) == 2
    assert len(keys) == 1
    assert decision.id == service.only()["id"]
    assert len(async_client.slept) == 1


def test_errors_carry_the_error_body(async_client):
    with pytest.raises(NotFound) as raised:
        asyncio.run(async_client.get("dec_9999"))

    assert raised.value.code == "not_found"


def test_cancel_list_and_iterate(async_client, service):
    async def scenario():
        first = await async_client.create("Deploy 4.2", approver=ALICE)
        await async_client.create("Deploy 4.3", approver=ALICE)
        cancelled = await async_client.cancel(first.id)
        page = await async_client.list(status="cancelled")
        every = [decision.id async for decision in async_client.iter_decisions(page_size=1)]
        return cancelled, page, every

    cancelled, page, every = asyncio.run(scenario())

    assert cancelled.status == "cancelled"
    assert [d.id for d in page.results] == ["dec_0001"]
    assert every == ["dec_0002", "dec_0001"]


def test_giving_up_waiting_raises_approval_timeout(async_client):
    with pytest.raises(ApprovalTimeout) as raised:
        asyncio.run(async_client.request_approval("Deploy 4.2", approver=ALICE, timeout=0))

    assert raised.value.decision.is_pending


def test_the_portal_fields_go_out_and_come_back_through_the_async_client(async_client, service):
    service.while_waiting = lambda decision_id: service.answer(
        decision_id, "approved", via="web", verified="session"
    )
    created = []

    async def note_it(decision):
        created.append(decision)

    outcome = asyncio.run(
        async_client.request_approval(
            "Deploy 4.2",
            approver=ALICE,
            verification="session",
            requested_by="carol@example.com",
            distinct_stage_approvers=True,
            on_created=note_it,
        )
    )

    assert json.loads(service.seen[0].content) == {
        "action": "Deploy 4.2",
        "approver": ALICE,
        "verification": "session",
        "requested_by": "carol@example.com",
        "distinct_stage_approvers": True,
    }
    assert [(d.verification, d.requested_by, d.distinct_stage_approvers) for d in created] == [
        ("session", "carol@example.com", True)
    ]
    assert outcome.verified == "session"
