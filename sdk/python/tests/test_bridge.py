"""InterruptBridge against the fake service: forwarding is idempotent, answers resume the
right interrupt, a resumed graph that interrupts again is forwarded again, callbacks are
verified, and the WSGI / ASGI receivers answer what Countersign expects."""

import asyncio
import io
import operator
from typing import Annotated, TypedDict

import httpx
import pytest
from countersign import AsyncCountersign, CountersignError
from countersign.langgraph import InterruptBridge
from fake_service import ALICE, API_KEY, BASE_URL, WEBHOOK_SECRET
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.types import interrupt

THREAD = {"configurable": {"thread_id": "refund-1042"}}


class RefundState(TypedDict, total=False):
    amount: int
    log: Annotated[list, operator.add]


def ask_for_the_refund(state: RefundState) -> RefundState:
    outcome = interrupt({"action": f"Refund ${state['amount']}", "details": {"amount": state["amount"]}})
    return {"log": ["refunded" if outcome["approved"] else f"not refunded: {outcome['note']}"]}


def ask_which_warehouse(state: RefundState) -> RefundState:
    return {"log": [f"ship from {interrupt('Leeds or Lyon?')}"]}


def refund_graph(*nodes, checkpointer=None):
    builder = StateGraph(RefundState)
    previous = START
    for node in nodes:
        builder.add_node(node.__name__, node)
        builder.add_edge(previous, node.__name__)
        previous = node.__name__
    return builder.compile(checkpointer=checkpointer or InMemorySaver())


@pytest.fixture
def bridge_for(client):
    def make(graph, **options):
        return InterruptBridge(
            graph, client=client, defaults={"approver": ALICE}, webhook_secret=WEBHOOK_SECRET, **options
        )

    return make


def test_an_interrupt_is_forwarded_with_its_thread_and_interrupt_ids(bridge_for, service):
    graph = refund_graph(ask_for_the_refund)
    bridge = bridge_for(graph, callback_url="https://agent.example.com/countersign")

    status = bridge.invoke({"amount": 120}, THREAD)

    decision = service.only()
    (pending,) = graph.get_state(THREAD).interrupts
    assert decision["action"] == "Refund $120"
    assert decision["callback_url"] == "https://agent.example.com/countersign"
    assert decision["metadata"]["langgraph"] == {
        "graph": "LangGraph",
        "thread_id": "refund-1042",
        "interrupt_id": pending.id,
        "item": 0,
        "items": 1,
    }
    assert service.bodies[0]["approver"] == ALICE  # from the bridge's defaults
    assert [d.id for d in status.waiting_on] == [decision["id"]]
    assert not status.done


def test_forwarding_again_finds_the_same_decision(bridge_for, service):
    graph = refund_graph(ask_for_the_refund)
    bridge = bridge_for(graph)
    bridge.invoke({"amount": 120}, THREAD)

    bridge.forward(THREAD)
    bridge_for(graph).forward(THREAD)  # another process, say

    assert len(service.decisions) == 1
    assert len(service.bodies) == 3


def test_alices_approval_resumes_the_graph_to_the_end(bridge_for, service):
    graph = refund_graph(ask_for_the_refund)
    bridge = bridge_for(graph)
    bridge.invoke({"amount": 120}, THREAD)
    service.answer(service.only()["id"], "approved")

    status = bridge.advance(THREAD)

    assert status.done
    assert status.resumed == 1
    assert status.values["log"] == ["refunded"]


def test_an_interrupt_the_policy_approves_at_once_is_resumed_in_the_same_call(bridge_for, service):
    service.policy = lambda body: ("approved", "small-refunds") if body["details"]["amount"] < 50 else None

    status = bridge_for(refund_graph(ask_for_the_refund)).invoke({"amount": 20}, THREAD)

    assert status.done
    assert status.values["log"] == ["refunded"]


def test_a_resumed_graph_that_interrupts_again_is_forwarded_again(bridge_for, service):
    graph = refund_graph(ask_for_the_refund, ask_which_warehouse)
    forwarded = []
    bridge = bridge_for(graph, on_forward=forwarded.append)
    bridge.invoke({"amount": 120}, THREAD)
    service.answer("dec_0001", "approved")

    status = bridge.advance(THREAD)

    assert [d.action for d in forwarded] == ["Refund $120", "Leeds or Lyon?"]
    assert [d.id for d in status.waiting_on] == ["dec_0002"]
    service.answer("dec_0002", "responded", text="Lyon")
    assert bridge.advance(THREAD).values["log"] == ["refunded", "ship from Lyon"]


def test_a_batch_is_resumed_only_once_every_item_is_answered(bridge_for, service):
    def review_two_tool_calls(state):
        decisions = interrupt(
            {
                "action_requests": [
                    {"name": "send_email", "args": {"to": "bob@example.com"}},
                    {"name": "delete_file", "args": {"path": "reports/q3.pdf"}},
                ],
                "review_configs": [],
            }
        )
        return {"log": [d["type"] for d in decisions["decisions"]]}

    bridge = bridge_for(refund_graph(review_two_tool_calls))
    bridge.invoke({"amount": 0}, THREAD)
    service.answer("dec_0001", "approved")

    halfway = bridge.advance(THREAD)
    service.answer("dec_0002", "denied", note="keep it")
    finished = bridge.advance(THREAD)

    assert halfway.resumed == 0
    assert [d.id for d in halfway.waiting_on] == ["dec_0002"]
    assert finished.values["log"] == ["approve", "reject"]


def test_wait_and_resume_long_polls_until_the_graph_finishes(bridge_for, service):
    answers = {"dec_0001": {"status": "approved"}, "dec_0002": {"status": "responded", "text": "Leeds"}}
    service.while_waiting = lambda decision_id: service.answer(decision_id, **answers[decision_id])
    bridge = bridge_for(refund_graph(ask_for_the_refund, ask_which_warehouse))
    bridge.invoke({"amount": 120}, THREAD)

    status = bridge.wait_and_resume(THREAD)

    assert status.done
    assert status.values["log"] == ["refunded", "ship from Leeds"]


def test_a_verified_callback_advances_the_thread_it_names(bridge_for, service):
    bridge = bridge_for(refund_graph(ask_for_the_refund))
    bridge.invoke({"amount": 120}, THREAD)
    service.answer("dec_0001", "denied", note="duplicate order")
    body, headers = service.signed_callback("dec_0001")

    result = bridge.handle_callback(body, headers)

    assert result.status_code == 200
    assert result.thread_id == "refund-1042"
    assert result.resumed == 1
    assert bridge.graph.get_state(THREAD).values["log"] == ["not refunded: duplicate order"]


def test_a_callback_delivered_twice_resumes_once(bridge_for, service):
    bridge = bridge_for(refund_graph(ask_for_the_refund))
    bridge.invoke({"amount": 120}, THREAD)
    service.answer("dec_0001", "approved")
    body, headers = service.signed_callback("dec_0001")

    first = bridge.handle_callback(body, headers)
    again = bridge.handle_callback(body, headers)

    assert (first.resumed, again.resumed) == (1, 0)
    assert again.status_code == 200
    assert bridge.graph.get_state(THREAD).values["log"] == ["refunded"]


def test_a_forged_callback_is_refused_and_resumes_nothing(bridge_for, service):
    bridge = bridge_for(refund_graph(ask_for_the_refund))
    bridge.invoke({"amount": 120}, THREAD)
    service.answer("dec_0001", "approved")
    body, headers = service.signed_callback("dec_0001", secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")

    result = bridge.handle_callback(body, headers)

    assert result.status_code == 401
    still = bridge.graph.get_state(THREAD)
    assert still.next == ("ask_for_the_refund",)
    assert len(still.interrupts) == 1


def test_a_callback_for_a_decision_made_outside_langgraph_is_acknowledged_and_ignored(
    bridge_for, client, service
):
    bridge = bridge_for(refund_graph(ask_for_the_refund))
    decision = client.create("Deploy 4.2", approver=ALICE)
    service.answer(decision.id, "approved")

    result = bridge.handle_callback(*service.signed_callback(decision.id))

    assert result.status_code == 200
    assert "ignored" in result.message


def test_the_wsgi_receiver_answers_200_after_resuming_and_401_for_a_forgery(bridge_for, service):
    bridge = bridge_for(refund_graph(ask_for_the_refund))
    bridge.invoke({"amount": 120}, THREAD)
    service.answer("dec_0001", "approved")
    body, headers = service.signed_callback("dec_0001")
    app = bridge.wsgi_app()

    def post(body: bytes, headers: dict) -> str:
        environ = {
            "REQUEST_METHOD": "POST",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
        }
        statuses = []
        b"".join(app(environ, lambda status, headers: statuses.append(status)))
        return statuses[0]

    assert post(body, {**headers, "webhook-signature": "v1,AAAA"}) == "401 Unauthorized"
    assert post(body, headers) == "200 OK"
    assert bridge.graph.get_state(THREAD).values["log"] == ["refunded"]


def test_the_asgi_receiver_resumes_an_async_graph(service):
    async_agent = AsyncCountersign(BASE_URL, API_KEY, transport=httpx.MockTransport(service.handle))
    bridge = InterruptBridge(
        refund_graph(ask_for_the_refund),
        async_client=async_agent,
        defaults={"approver": ALICE},
        webhook_secret=WEBHOOK_SECRET,
    )

    async def scenario():
        await bridge.ainvoke({"amount": 120}, THREAD)
        service.answer("dec_0001", "approved")
        body, headers = service.signed_callback("dec_0001")
        receiver = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=bridge.asgi_app()), base_url="http://agent"
        )
        async with receiver:
            refused = await receiver.get("/countersign")
            accepted = await receiver.post("/countersign", content=body, headers=headers)
        return refused, accepted, await bridge.graph.aget_state(THREAD)

    refused, accepted, state = asyncio.run(scenario())

    assert refused.status_code == 405
    assert accepted.status_code == 200
    assert accepted.json()["resumed"] == 1
    assert state.values["log"] == ["refunded"]


def test_a_failing_resume_answers_500_so_countersign_delivers_again(bridge_for, service):
    attempts = []

    def flaky(state):
        outcome = interrupt({"action": "Refund $120"})
        attempts.append(outcome["status"])
        if len(attempts) == 1:
            raise RuntimeError("payment provider down")
        return {"log": ["refunded"]}

    bridge = bridge_for(refund_graph(flaky))
    bridge.invoke({"amount": 120}, THREAD)
    service.answer("dec_0001", "approved")
    body, headers = service.signed_callback("dec_0001")
    app = bridge.asgi_app(in_thread=True)

    async def deliver():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://agent"
        ) as receiver:
            return [(await receiver.post("/", content=body, headers=headers)).status_code for _ in range(2)]

    assert asyncio.run(deliver()) == [500, 200]
    assert bridge.graph.get_state(THREAD).values["log"] == ["refunded"]


def test_a_process_with_other_settings_is_told_so_instead_of_asking_twice(bridge_for, client, service):
    graph = refund_graph(ask_for_the_refund)
    bridge_for(graph).invoke({"amount": 120}, THREAD)
    differently_configured = InterruptBridge(graph, client=client, defaults={"approver": "bob@example.com"})

    with pytest.raises(CountersignError, match="same settings in every process"):
        differently_configured.forward(THREAD)

    assert len(service.decisions) == 1
