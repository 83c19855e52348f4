"""Blocking style: approval_node puts the outcome into the state; @requires_approval runs a
tool only once approved, with the arguments as approved."""

import asyncio
import inspect
from typing import TypedDict

import httpx
import pytest
from countersign import ApprovalTimeout, AsyncCountersign
from countersign.langgraph import approval_node, requires_approval
from fake_service import ALICE, API_KEY, BASE_URL
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph


class Refund(TypedDict, total=False):
    amount: int
    approval: dict
    result: str


def refund_graph(approval):
    builder = StateGraph(Refund)
    builder.add_node("approval", approval)
    builder.add_node("refund", lambda state: {"result": f"refunded ${state['amount']}"})
    builder.add_node("decline", lambda state: {"result": f"declined: {state['approval']['note']}"})
    builder.add_edge(START, "approval")
    builder.add_conditional_edges("approval", lambda s: "refund" if s["approval"]["approved"] else "decline")
    builder.add_edge("refund", END)
    builder.add_edge("decline", END)
    return builder.compile(checkpointer=InMemorySaver())


def test_approval_node_asks_with_values_from_the_state_and_routes_on_the_answer(client, service):
    service.while_waiting = lambda decision_id: service.answer(decision_id, "approved", note="ok")
    node = approval_node(
        client,
        action=lambda s: f"Refund ${s['amount']} to order #1042",
        details=lambda s: {"amount": s["amount"]},
        approver=ALICE,
        urgency=lambda s: "high" if s["amount"] > 500 else None,
    )

    final = refund_graph(node).invoke({"amount": 120}, {"configurable": {"thread_id": "t-1"}})

    assert service.bodies == [
        {"action": "Refund $120 to order #1042", "details": {"amount": 120}, "approver": ALICE}
    ]
    assert final["approval"]["approved"] is True
    assert final["approval"]["by"] == ALICE
    assert final["result"] == "refunded $120"


def test_a_graph_run_again_after_a_crash_finds_the_same_decision(client, service):
    # timeout=0 gives up waiting at once: the run fails as if the process had died there.
    graph = refund_graph(approval_node(client, action="Refund $120", approver=ALICE, timeout=0))
    config = {"configurable": {"thread_id": "t-1"}}
    with pytest.raises(ApprovalTimeout):
        graph.invoke({"amount": 120}, config)
    service.answer("dec_0001", "approved")

    final = graph.invoke(None, config)  # run again from the last checkpoint

    posts = [request for request in service.seen if request.method == "POST"]
    assert len(posts) == 2
    assert len({request.headers["idempotency-key"] for request in posts}) == 1
    assert posts[0].headers["idempotency-key"].startswith("langgraph-node:")
    assert len(service.decisions) == 1  # alice was asked once
    assert final["result"] == "refunded $120"


def test_a_denied_refund_takes_the_other_edge(client, service):
    service.while_waiting = lambda decision_id: service.answer(decision_id, "denied", note="fraud risk")
    node = approval_node(client, action="Refund $900", details={"amount": 900}, approver=ALICE)

    final = refund_graph(node).invoke({"amount": 900}, {"configurable": {"thread_id": "t-2"}})

    assert final["approval"]["status"] == "denied"
    assert final["result"] == "declined: fraud risk"


def test_approval_node_with_the_async_client_is_an_async_node(service):
    service.while_waiting = lambda decision_id: service.answer(decision_id, "approved")
    agent = AsyncCountersign(BASE_URL, API_KEY, transport=httpx.MockTransport(service.handle))
    node = approval_node(agent, action="Refund $120", approver=ALICE)

    final = asyncio.run(refund_graph(node).ainvoke({"amount": 120}, {"configurable": {"thread_id": "t-3"}}))

    assert inspect.iscoroutinefunction(node)
    assert final["result"] == "refunded $120"


def test_a_guarded_tool_runs_with_the_arguments_alice_approved(client, service):
    sent = []

    @requires_approval(client, action="Email {to}: {subject}", approver=ALICE)
    def send_email(to: str, subject: str, body: str = "Hello") -> str:
        sent.append((to, subject, body))
        return "sent"

    def alice_fixes_the_subject(decision_id):
        decision = service.decisions[decision_id]
        service.answer(decision_id, "approved", details={**decision["details"], "subject": "Invoice #7"})

    service.while_waiting = alice_fixes_the_subject

    result = send_email("bob@example.com", subject="Invoice")

    assert result == "sent"
    assert sent == [("bob@example.com", "Invoice #7", "Hello")]
    asked = service.bodies[0]
    assert asked["action"] == "Email bob@example.com: Invoice"
    assert asked["details"] == {"to": "bob@example.com", "subject": "Invoice", "body": "Hello"}
    assert asked["allow_edit"] is True
    assert list(inspect.signature(send_email).parameters) == ["to", "subject", "body"]  # @tool sees these


def test_a_guarded_tool_that_is_not_approved_does_not_run_and_says_why(client, service):
    sent = []

    @requires_approval(client, approver=ALICE)
    def send_email(to: str) -> str:
        sent.append(to)
        return "sent"

    service.while_waiting = lambda decision_id: service.answer(decision_id, "denied", note="wrong customer")

    result = send_email("bob@example.com")

    assert sent == []
    assert result == f"send_email was not run: denied by {ALICE}. Note: wrong customer"
    assert service.bodies[0]["action"] == "Run send_email"


def test_an_async_tool_waits_without_blocking_the_event_loop(client, service):
    service.while_waiting = lambda decision_id: service.answer(decision_id, "approved")

    @requires_approval(client, approver=ALICE)
    async def delete_file(path: str) -> str:
        return f"deleted {path}"

    assert asyncio.run(delete_file("reports/q3.pdf")) == "deleted reports/q3.pdf"


def test_a_guarded_function_can_still_be_made_a_langchain_tool(client):
    from langchain_core.tools import tool

    @tool
    @requires_approval(client, approver=ALICE)
    def send_email(to: str, subject: str) -> str:
        """Send an email."""
        return "sent"

    assert set(send_email.args) == {"to", "subject"}
    assert send_email.description == "Send an email."
