"""The Python SDK and its LangGraph integration against a live Countersign.

Real LangGraph graphs with a SQLite checkpointer file talk HTTP to the service under
pytest-django's live server. Alice plays the approver exactly as her email lets her: the
test builds her one-click link and POSTs its confirm form. Callbacks are delivered by running
the outbox attempt by hand (no Celery worker), to the SDK's own receiver served on a real
local port, which resumes the graph.

Named actors: Acme's refund agent asks; alice approves.
"""

import importlib.util
import operator
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, TypedDict

import pytest

# The SDK is a distribution of its own (sdk/python), which `make install` installs.
from countersign.langgraph import InterruptBridge, approval_node
from django.test import RequestFactory
from django.utils import timezone
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from decisions.models import Decision, Policy
from decisions.outbox import callback_body
from notifications.callbacks import signature_header, webhook_id
from notifications.models import Delivery
from tests.conftest import ALICE
from tests.sdk_live import (  # noqa: F401 (the agent_client, agent_receiver and webhook_secret fixtures)
    agent_client_fixture,
    agent_receiver_fixture,
    alice_answers_in_words,
    alice_clicks,
    deliver_callback,
    service_reachable_fixture,
    webhook_secret_fixture,
)

# A real server sees committed data only.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("service_reachable_from_the_agent"),
]

ORDER = {"order": 1042, "amount": 120}


@pytest.fixture
def checkpoints(tmp_path) -> Path:
    return tmp_path / "checkpoints.sqlite"


@pytest.fixture
def sqlite_saver() -> Iterator:
    """sqlite_saver(path): a SqliteSaver on that file, closed after the test."""
    connections: list[sqlite3.Connection] = []

    def open_saver(path: Path) -> SqliteSaver:
        # check_same_thread=False: the receiver resumes the graph in its request thread.
        connections.append(sqlite3.connect(path, check_same_thread=False))
        return SqliteSaver(connections[-1])

    yield open_saver
    for connection in connections:
        connection.close()


def decisions_of_thread(thread_id: str) -> list[Decision]:
    return list(Decision.objects.filter(metadata__langgraph__thread_id=thread_id).order_by("created_at"))


# --- graphs -------------------------------------------------------------------------------


class Refund(TypedDict, total=False):
    order: int
    amount: int
    approval: dict
    log: Annotated[list[str], operator.add]


def issue_refund(state: Refund) -> Refund:
    if not state["approval"]["approved"]:
        return {"log": ["no refund"]}
    return {"log": [f"refunded ${state['amount']} on order #{state['order']}"]}


def linear_graph(checkpointer, *nodes):
    builder = StateGraph(Refund)
    previous = START
    for node in nodes:
        builder.add_node(node.__name__, node)
        builder.add_edge(previous, node.__name__)
        previous = node.__name__
    builder.add_edge(previous, END)
    return builder.compile(checkpointer=checkpointer)


def ask_for_the_refund(state: Refund) -> Refund:
    outcome = interrupt(
        {
            "action": f"Refund ${state['amount']} to order #{state['order']}",
            "details": {"amount": state["amount"], "order": state["order"]},
        }
    )
    return {"approval": outcome, "log": [f"{outcome['status']} by {outcome['by']}"]}


# --- blocking style -----------------------------------------------------------------------


def test_an_approval_node_waits_for_alices_click_and_the_graph_carries_on(
    agent_client, checkpoints, sqlite_saver
):
    created = threading.Event()
    asked: list = []

    def note(decision) -> None:
        asked.append(decision)
        created.set()

    node = approval_node(
        agent_client,
        action=lambda s: f"Refund ${s['amount']} to order #{s['order']}",
        details=lambda s: {"amount": s["amount"], "order": s["order"]},
        approver=ALICE,
        on_created=note,
    )
    graph = linear_graph(sqlite_saver(checkpoints), node, issue_refund)

    with ThreadPoolExecutor(1) as pool:
        # The agent blocks in its long-poll while alice reads her email.
        run = pool.submit(graph.invoke, ORDER, {"configurable": {"thread_id": "refund-1042"}})
        assert created.wait(timeout=30), "the node never asked"
        alice_clicks(asked[0].id, "approve", note="customer is a regular")
        final = run.result(timeout=90)

    assert final["approval"]["status"] == "approved"
    assert final["approval"]["by"] == ALICE
    assert final["approval"]["via"] == "email"
    assert final["approval"]["note"] == "customer is a regular"
    assert final["log"] == ["refunded $120 on order #1042"]


def test_a_policy_approval_lets_the_graph_through_without_anyone_asked(
    agent_client, acme, checkpoints, sqlite_saver
):
    Policy.objects.create(
        organization=acme,
        name="small-refunds",
        position=1,
        conditions=[{"field": "details.amount", "op": "lt", "value": 50}],
        action=Policy.Action.APPROVE,
    )
    node = approval_node(agent_client, action="Refund $20 to order #1043", details={"amount": 20})
    graph = linear_graph(sqlite_saver(checkpoints), node, issue_refund)

    final = graph.invoke({"order": 1043, "amount": 20}, {"configurable": {"thread_id": "refund-1043"}})

    assert final["approval"]["by"] == "policy:small-refunds"
    assert final["approval"]["via"] == "policy"
    assert final["log"] == ["refunded $20 on order #1043"]


# --- durable style: interrupt → email click → callback → resumed ---------------------------


def test_an_interrupt_reaches_alice_and_her_click_resumes_the_graph_by_callback(
    agent_client, webhook_secret, checkpoints, agent_receiver, sqlite_saver
):
    graph = linear_graph(sqlite_saver(checkpoints), ask_for_the_refund, issue_refund)
    bridge = InterruptBridge(
        graph,
        client=agent_client,
        defaults={"approver": ALICE},
        callback_url=agent_receiver.url,
        webhook_secret=webhook_secret,
    )
    agent_receiver.serve(bridge.wsgi_app())
    thread = {"configurable": {"thread_id": "refund-1042"}}

    paused = bridge.invoke(ORDER, thread)

    (decision,) = paused.waiting_on
    (pending,) = graph.get_state(thread).interrupts
    assert decision.metadata["langgraph"]["thread_id"] == "refund-1042"
    assert decision.metadata["langgraph"]["interrupt_id"] == pending.id
    assert decision.callback_url == agent_receiver.url

    alice_clicks(decision.id, "approve")
    delivery = deliver_callback(decision.id)

    assert delivery.status == Delivery.Status.SENT  # the receiver answered 2xx
    state = graph.get_state(thread)
    assert not state.next  # finished
    assert not state.interrupts
    assert state.values["log"] == [f"approved by {ALICE}", "refunded $120 on order #1042"]


AGENT_PROGRAM = '''
"""The refund agent as a program of its own: it runs until the graph interrupts, then exits."""
import operator
import sqlite3
import sys
from typing import Annotated, TypedDict

from countersign.langgraph import InterruptBridge
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class Refund(TypedDict, total=False):
    order: int
    amount: int
    log: Annotated[list[str], operator.add]


def ask_for_the_refund(state):
    outcome = interrupt({"action": f"Refund ${state['amount']} to order #{state['order']}",
                         "details": {"amount": state["amount"], "order": state["order"]}})
    return {"log": [f"{outcome['status']} by {outcome['by']}"]}


def issue_refund(state):
    return {"log": [f"refunded ${state['amount']} on order #{state['order']}"]}


def build(checkpoints):
    builder = StateGraph(Refund)
    builder.add_node(ask_for_the_refund)
    builder.add_node(issue_refund)
    builder.add_edge(START, "ask_for_the_refund")
    builder.add_edge("ask_for_the_refund", "issue_refund")
    builder.add_edge("issue_refund", END)
    return builder.compile(checkpointer=SqliteSaver(sqlite3.connect(checkpoints, check_same_thread=False)))


def bridge(graph, callback_url, webhook_secret=None):
    return InterruptBridge(graph, defaults={"approver": "alice@example.com"},
                           callback_url=callback_url, webhook_secret=webhook_secret)


if __name__ == "__main__":
    checkpoints, callback_url, thread_id = sys.argv[1:]
    status = bridge(build(checkpoints), callback_url).invoke(
        {"order": 1042, "amount": 120}, {"configurable": {"thread_id": thread_id}})
    print(status.waiting_on[0].id)
'''


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_answer_resumes_the_graph_after_the_agent_process_was_restarted(
    live_server, acme_key, webhook_secret, checkpoints, agent_receiver, tmp_path, monkeypatch
):
    program = tmp_path / "refund_agent_program.py"
    program.write_text(AGENT_PROGRAM)

    # given: the agent ran in a process of its own until the graph interrupted, then exited
    started = subprocess.run(
        [sys.executable, str(program), str(checkpoints), agent_receiver.url, "refund-1042"],
        env={
            "COUNTERSIGN_URL": live_server.url,
            "COUNTERSIGN_API_KEY": acme_key[1],
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    decision_id = started.stdout.strip().splitlines()[-1]

    # when: a new agent process (new graph, new bridge, same checkpoint file) takes the
    # callbacks, and alice answers
    monkeypatch.setenv("COUNTERSIGN_URL", live_server.url)
    monkeypatch.setenv("COUNTERSIGN_API_KEY", acme_key[1])
    restarted = load_module(program)
    graph = restarted.build(str(checkpoints))
    agent_receiver.serve(restarted.bridge(graph, agent_receiver.url, webhook_secret).wsgi_app())
    alice_clicks(decision_id, "approve")
    delivery = deliver_callback(decision_id)

    # then: the graph resumed where the first process left it, and finished
    assert delivery.status == Delivery.Status.SENT
    state = graph.get_state({"configurable": {"thread_id": "refund-1042"}})
    assert not state.next
    assert state.values["log"] == [f"approved by {ALICE}", "refunded $120 on order #1042"]
    assert len(decisions_of_thread("refund-1042")) == 1  # forwarding again asked nobody twice
    graph.checkpointer.conn.close()


def test_a_graph_with_two_interrupts_in_a_row_is_forwarded_again_after_the_first_answer(
    agent_client, webhook_secret, checkpoints, agent_receiver, sqlite_saver
):
    def approve_then_choose_warehouse(state: Refund) -> Refund:
        approval = interrupt({"action": f"Refund ${state['amount']} to order #{state['order']}"})
        warehouse = interrupt(f"Which warehouse takes the return of order #{state['order']}?")
        return {"log": [f"{approval['status']}, return to {warehouse}"]}

    graph = linear_graph(sqlite_saver(checkpoints), approve_then_choose_warehouse)
    bridge = InterruptBridge(
        graph,
        client=agent_client,
        defaults={"approver": ALICE},
        callback_url=agent_receiver.url,
        webhook_secret=webhook_secret,
    )
    agent_receiver.serve(bridge.wsgi_app())
    thread = {"configurable": {"thread_id": "refund-1042"}}
    (first,) = bridge.invoke(ORDER, thread).waiting_on

    alice_clicks(first.id, "approve")
    deliver_callback(first.id)

    first_asked, second_asked = decisions_of_thread("refund-1042")
    assert first_asked.pk == first.id
    assert second_asked.response_type == "text"
    assert second_asked.action == "Which warehouse takes the return of order #1042?"
    assert (
        first_asked.metadata["langgraph"]["interrupt_id"]
        != second_asked.metadata["langgraph"]["interrupt_id"]
    )
    assert graph.get_state(thread).interrupts  # paused again, on the second question

    alice_answers_in_words(second_asked.pk, "Leeds")
    deliver_callback(second_asked.pk)

    state = graph.get_state(thread)
    assert not state.next
    assert state.values["log"] == ["approved, return to Leeds"]


# --- LangGraph's own interrupt shapes ----------------------------------------------------


def durable_bridge(graph, agent_client, webhook_secret, agent_receiver) -> InterruptBridge:
    bridge = InterruptBridge(
        graph,
        client=agent_client,
        defaults={"approver": ALICE},
        callback_url=agent_receiver.url,
        webhook_secret=webhook_secret,
    )
    agent_receiver.serve(bridge.wsgi_app())
    return bridge


def refund_request(state: Refund) -> dict:
    return {
        "action_request": {
            "action": "issue_refund",
            "args": {"order": state["order"], "amount": state["amount"]},
        },
        "config": {"allow_accept": True, "allow_edit": True, "allow_respond": True, "allow_ignore": True},
        "description": "The customer says the parcel arrived damaged.",
    }


def test_alice_edits_the_amount_and_a_human_interrupt_resumes_with_an_edit(
    agent_client, webhook_secret, checkpoints, agent_receiver, sqlite_saver
):
    def review_refund(state: Refund) -> Refund:
        (response,) = interrupt([refund_request(state)])
        return {"approval": response}

    graph = linear_graph(sqlite_saver(checkpoints), review_refund)
    bridge = durable_bridge(graph, agent_client, webhook_secret, agent_receiver)
    thread = {"configurable": {"thread_id": "refund-1042"}}
    (decision,) = bridge.invoke(ORDER, thread).waiting_on
    assert decision.options == ["approve", "respond", "ignore"]
    assert decision.allow_edit

    alice_clicks(decision.id, "approve", detail__amount="95")
    deliver_callback(decision.id)

    assert graph.get_state(thread).values["approval"] == {
        "type": "edit",
        "args": {"action": "issue_refund", "args": {"order": 1042, "amount": 95}},
    }


def test_alice_replies_and_a_human_interrupt_resumes_with_her_response(
    agent_client, webhook_secret, checkpoints, agent_receiver, sqlite_saver
):
    def review_refund(state: Refund) -> Refund:
        (response,) = interrupt([refund_request(state)])
        return {"approval": response}

    graph = linear_graph(sqlite_saver(checkpoints), review_refund)
    bridge = durable_bridge(graph, agent_client, webhook_secret, agent_receiver)
    thread = {"configurable": {"thread_id": "refund-1042"}}
    (decision,) = bridge.invoke(ORDER, thread).waiting_on

    alice_clicks(decision.id, "respond", note="Offer a voucher instead")
    deliver_callback(decision.id)

    assert graph.get_state(thread).values["approval"] == {
        "type": "response",
        "args": "Offer a voucher instead",
    }


def test_hitl_middleware_requests_resume_with_edit_and_respond_decisions(
    agent_client, webhook_secret, checkpoints, agent_receiver, sqlite_saver
):
    # The shape LangChain's HumanInTheLoopMiddleware raises: two tool calls, one interrupt.
    def review_tool_calls(state: Refund) -> Refund:
        response = interrupt(
            {
                "action_requests": [
                    {"name": "issue_refund", "args": {"order": 1042, "amount": 120}, "description": "Refund"},
                    {"name": "ask_customer", "args": {"question": "Photo of the parcel?"}},
                ],
                "review_configs": [
                    {"action_name": "issue_refund", "allowed_decisions": ["approve", "edit", "reject"]},
                    {"action_name": "ask_customer", "allowed_decisions": ["respond"]},
                ],
            }
        )
        return {"approval": response}

    graph = linear_graph(sqlite_saver(checkpoints), review_tool_calls)
    bridge = durable_bridge(graph, agent_client, webhook_secret, agent_receiver)
    thread = {"configurable": {"thread_id": "refund-1042"}}
    refund, question = bridge.invoke(ORDER, thread).waiting_on
    assert question.response == "text"

    alice_clicks(refund.id, "approve", detail__amount="100")
    deliver_callback(refund.id)
    assert graph.get_state(thread).interrupts  # one of two answered: still waiting

    alice_answers_in_words(question.id, "No need, I saw it in the ticket")
    deliver_callback(question.id)

    assert graph.get_state(thread).values["approval"] == {
        "decisions": [
            {
                "type": "edit",
                "edited_action": {"name": "issue_refund", "args": {"order": 1042, "amount": 100}},
            },
            {"type": "respond", "message": "No need, I saw it in the ticket"},
        ]
    }


# --- without a callback URL, and other receivers ------------------------------------------


def test_wait_and_resume_carries_a_thread_through_by_long_poll(agent_client, checkpoints, sqlite_saver):
    graph = linear_graph(sqlite_saver(checkpoints), ask_for_the_refund, issue_refund)
    bridge = InterruptBridge(graph, client=agent_client, defaults={"approver": ALICE})
    thread = {"configurable": {"thread_id": "refund-1042"}}
    (decision,) = bridge.invoke(ORDER, thread).waiting_on

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(bridge.wait_and_resume, thread)
        alice_clicks(decision.id, "deny", note="order was never paid")
        status = waiting.result(timeout=90)

    assert status.done
    assert status.values["log"] == [f"denied by {ALICE}", "no refund"]
    assert status.values["approval"]["note"] == "order was never paid"


def test_the_django_view_verifies_the_service_signature_and_resumes(
    agent_client, webhook_secret, checkpoints, sqlite_saver
):
    graph = linear_graph(sqlite_saver(checkpoints), ask_for_the_refund, issue_refund)
    bridge = InterruptBridge(
        graph,
        client=agent_client,
        defaults={"approver": ALICE},
        callback_url="https://agent.example.com/countersign",
        webhook_secret=webhook_secret,
    )
    thread = {"configurable": {"thread_id": "refund-1042"}}
    (decision,) = bridge.invoke(ORDER, thread).waiting_on
    alice_clicks(decision.id, "approve")
    delivery = Delivery.objects.get(decision_id=decision.id, kind=Delivery.Kind.CALLBACK)
    # The body and headers the service's own callback sender would send.
    body, msg_id, now = callback_body(delivery), webhook_id(delivery), timezone.now()
    signature = signature_header(msg_id=msg_id, at=now, body=body, secrets=[webhook_secret])
    view = bridge.django_view()

    def post(signature: str):
        return view(
            RequestFactory().post(
                "/countersign/callback",
                data=body,
                content_type="application/json",
                headers={
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": signature,
                },
            )
        )

    assert post("v1," + "A" * 44).status_code == 401
    assert graph.get_state(thread).interrupts  # a forgery resumes nothing
    answered = post(signature)

    assert answered.status_code == 200
    assert graph.get_state(thread).values["log"] == [f"approved by {ALICE}", "refunded $120 on order #1042"]
