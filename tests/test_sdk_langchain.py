"""LangChain v1 agents (create_agent + HumanInTheLoopMiddleware) reviewed through a live
Countersign by the SDK's HITLBridge.

A real `create_agent` agent runs with a scripted chat model from langchain_core (no LLM, no
network): its first turn calls a tool, its next turn answers. HumanInTheLoopMiddleware pauses
the tool call; the bridge asks alice; alice answers through her real one-click link; the
agent goes on with the middleware's own decision (approve / edit / reject / respond).
Blocking runs wait by long-poll; durable runs are resumed by the callback, delivered by
running the outbox attempt to the SDK's receiver on a real port, on a SQLite checkpointer.

Named actors: Acme's support agent asks; alice reviews its tool calls.
"""

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from countersign.langchain import HITLBridge
from countersign.langgraph import ThreadStatus
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from decisions.models import Decision
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
from tests.test_sdk_langgraph import load_module

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("service_reachable_from_the_agent"),
]

THREAD = {"configurable": {"thread_id": "ticket-1042"}}
ASK = {"messages": [{"role": "user", "content": "The parcel for order #1042 arrived broken."}]}


class ScriptedChatModel(FakeMessagesListChatModel):
    """langchain_core's fake chat model, answering by the conversation's turn (how many
    replies it already gave) rather than by a counter: a process that resumes the agent
    after a restart gets the same next turn."""

    def bind_tools(self, tools, **kwargs):
        return self  # the script already knows which tools it calls

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.i = min(sum(isinstance(m, AIMessage) for m in messages), len(self.responses) - 1)
        return super()._generate(messages, stop, run_manager, **kwargs)


def calls(*tool_calls: tuple[str, dict]) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[
            {"name": name, "args": args, "id": f"call_{index}"}
            for index, (name, args) in enumerate(tool_calls)
        ],
    )


@pytest.fixture
def refunds() -> list[dict]:
    return []


@pytest.fixture
def support_tools(refunds):
    @tool
    def issue_refund(order: int, amount: int) -> str:
        """Refund an order."""
        refunds.append({"order": order, "amount": amount})
        return f"refunded ${amount} on order #{order}"

    @tool
    def ask_customer(question: str) -> str:
        """Ask the customer a question (a person answers for them)."""
        raise AssertionError("answered by the reviewer, never run")

    return [issue_refund, ask_customer]


def support_agent(tools, checkpointer, *turns: AIMessage, interrupt_mode: str = "batched"):
    return create_agent(
        ScriptedChatModel(responses=[*turns, AIMessage(content="All done.")]),
        tools=tools,
        middleware=[
            HumanInTheLoopMiddleware(
                interrupt_on={
                    "issue_refund": {"allowed_decisions": ["approve", "edit", "reject"]},
                    "ask_customer": {"allowed_decisions": ["respond"]},
                },
                interrupt_mode=interrupt_mode,
            )
        ],
        checkpointer=checkpointer,
    )


REFUND_1042 = ("issue_refund", {"order": 1042, "amount": 120})
REFUND_TOOL = {"issue_refund": {"action": "Refund ${amount} to order #{order}"}}


def tool_messages(agent) -> list[ToolMessage]:
    return [m for m in agent.get_state(THREAD).values["messages"] if isinstance(m, ToolMessage)]


@pytest.fixture
def sqlite_saver(tmp_path) -> Iterator:
    """sqlite_saver(): a SqliteSaver on a file (durable, unlike InMemorySaver), closed after."""
    connections: list[sqlite3.Connection] = []

    def open_saver() -> SqliteSaver:
        # check_same_thread=False: the receiver resumes the agent in its request thread.
        connections.append(sqlite3.connect(tmp_path / "agent.sqlite", check_same_thread=False))
        return SqliteSaver(connections[-1])

    yield open_saver
    for connection in connections:
        connection.close()


# --- blocking: the run waits by long-poll ---------------------------------------------------


def run_while_alice_answers(bridge: HITLBridge, answer) -> tuple[ThreadStatus, list]:
    """bridge.run() in the agent's thread; `answer(decision)` is alice, in hers. The run's
    end, and the decisions it asked for."""
    asked = threading.Event()
    decisions: list = []
    bridge.on_forward = lambda decision: (decisions.append(decision), asked.set())
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(bridge.run, ASK, THREAD, timeout=60)
        assert asked.wait(timeout=30), "the agent never asked"
        answer(decisions[0])
        status = run.result(timeout=90)
    return status, decisions


def test_a_blocking_run_waits_for_alices_approval_and_the_tool_runs(agent_client, support_tools, refunds):
    agent = support_agent(support_tools, InMemorySaver(), calls(REFUND_1042))
    bridge = HITLBridge(agent, client=agent_client, defaults={"approver": ALICE}, tools=REFUND_TOOL)

    status, (decision,) = run_while_alice_answers(
        bridge, lambda decision: alice_clicks(decision.id, "approve")
    )

    assert decision.action == "Refund $120 to order #1042"
    assert decision.details == {"order": 1042, "amount": 120}
    assert decision.options == ["approve", "deny"]
    assert decision.allow_edit  # "edit" is among the allowed decisions
    assert status.done
    assert refunds == [{"order": 1042, "amount": 120}]
    assert status.values["messages"][-1].content == "All done."


def test_alices_denial_with_a_note_is_a_reject_the_model_reads_and_nothing_runs(
    agent_client, support_tools, refunds
):
    agent = support_agent(support_tools, InMemorySaver(), calls(REFUND_1042))
    bridge = HITLBridge(agent, client=agent_client, defaults={"approver": ALICE}, tools=REFUND_TOOL)

    status, _ = run_while_alice_answers(
        bridge, lambda decision: alice_clicks(decision.id, "deny", note="the order was never paid")
    )

    assert status.done
    assert refunds == []
    (rejected,) = tool_messages(agent)
    assert rejected.status == "error"
    assert (
        rejected.content
        == "User rejected the tool call for `issue_refund` with reason: the order was never paid"
    )


# --- durable: paused on a SQLite checkpointer, resumed by the callback -----------------------


def durable(agent, agent_client, webhook_secret, agent_receiver, **fields) -> HITLBridge:
    bridge = HITLBridge(
        agent,
        client=agent_client,
        defaults={"approver": ALICE},
        callback_url=agent_receiver.url,
        webhook_secret=webhook_secret,
        **fields,
    )
    agent_receiver.serve(bridge.wsgi_app())
    return bridge


def test_alice_edits_the_amount_and_the_callback_resumes_the_agent_with_an_edit(
    agent_client, webhook_secret, agent_receiver, support_tools, refunds, sqlite_saver
):
    agent = support_agent(support_tools, sqlite_saver(), calls(REFUND_1042))
    bridge = durable(agent, agent_client, webhook_secret, agent_receiver, tools=REFUND_TOOL)

    paused = bridge.invoke(ASK, THREAD)
    (decision,) = paused.waiting_on
    assert refunds == []  # nothing runs before alice answers
    assert decision.metadata["langgraph"]["thread_id"] == "ticket-1042"

    alice_clicks(decision.id, "approve", detail__amount="95")
    delivery = deliver_callback(decision.id)

    assert delivery.status == Delivery.Status.SENT
    assert refunds == [{"order": 1042, "amount": 95}]  # the tool ran with alice's amount
    (result,) = tool_messages(agent)
    assert "a human reviewer replaced this tool call" in result.content  # the middleware's own notice
    assert result.content.endswith("refunded $95 on order #1042")
    state = agent.get_state(THREAD)
    assert not state.next
    assert state.values["messages"][-1].content == "All done."


def test_two_tool_calls_in_one_turn_resume_once_both_are_answered(
    agent_client, webhook_secret, agent_receiver, support_tools, refunds, sqlite_saver
):
    agent = support_agent(
        support_tools,
        sqlite_saver(),
        calls(
            REFUND_1042,
            ("ask_customer", {"question": "Do you have a photo of the parcel?"}),
        ),
    )
    bridge = durable(agent, agent_client, webhook_secret, agent_receiver, tools=REFUND_TOOL)

    refund, question = bridge.invoke(ASK, THREAD).waiting_on
    assert question.response == "text"  # "respond" only: a question for alice to answer in words
    assert question.action == "Run ask_customer"

    alice_clicks(refund.id, "approve")
    deliver_callback(refund.id)
    assert agent.get_state(THREAD).interrupts  # one of two answered: still waiting
    assert refunds == []

    alice_answers_in_words(question.id, "Yes, it is attached to the ticket.")
    deliver_callback(question.id)

    assert refunds == [{"order": 1042, "amount": 120}]
    by_tool = {m.name: m for m in tool_messages(agent)}
    assert by_tool["ask_customer"].content == "Yes, it is attached to the ticket."
    assert by_tool["ask_customer"].status == "success"
    assert by_tool["issue_refund"].content == "refunded $120 on order #1042"
    assert agent.get_state(THREAD).values["messages"][-1].content == "All done."


def test_per_call_mode_asks_per_tool_call_with_the_tools_own_routing(
    agent_client, webhook_secret, agent_receiver, support_tools, refunds, sqlite_saver
):
    agent = support_agent(
        support_tools,
        sqlite_saver(),
        calls(REFUND_1042),
        interrupt_mode="per_call",
    )
    tools = {"issue_refund": {**REFUND_TOOL["issue_refund"], "urgency": "high", "timeout_minutes": 15}}
    bridge = durable(agent, agent_client, webhook_secret, agent_receiver, tools=tools)

    (decision,) = bridge.invoke(ASK, THREAD).waiting_on
    (pending,) = agent.get_state(THREAD).interrupts
    assert pending.value["type"] == "tool_approval"
    assert decision.action == "Refund $120 to order #1042"
    assert decision.urgency == "high"
    assert decision.allow_edit

    alice_clicks(decision.id, "approve", detail__amount="100")
    deliver_callback(decision.id)

    assert refunds == [{"order": 1042, "amount": 100}]


def test_a_cancelled_review_is_a_rejection_with_the_reason(
    agent_client, webhook_secret, agent_receiver, support_tools, refunds, sqlite_saver
):
    agent = support_agent(support_tools, sqlite_saver(), calls(REFUND_1042))
    bridge = durable(agent, agent_client, webhook_secret, agent_receiver)
    (decision,) = bridge.invoke(ASK, THREAD).waiting_on

    agent_client.cancel(decision.id)
    deliver_callback(decision.id)

    assert refunds == []
    (rejected,) = tool_messages(agent)
    assert rejected.content.endswith("with reason: The request for sign-off was cancelled.")
    assert not agent.get_state(THREAD).next


AGENT_PROGRAM = '''
"""The support agent as a program of its own: it runs until a review is needed, then exits."""
import os
import sqlite3
import sys

from countersign.langchain import HITLBridge
from countersign.langgraph import ThreadStatus
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver


class ScriptedChatModel(FakeMessagesListChatModel):
    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.i = min(sum(isinstance(m, AIMessage) for m in messages), len(self.responses) - 1)
        return super()._generate(messages, stop, run_manager, **kwargs)


@tool
def issue_refund(order: int, amount: int) -> str:
    """Refund an order."""
    with open(os.environ["REFUNDS_LOG"], "a") as log:
        log.write(f"{order} {amount}\\n")
    return f"refunded ${amount} on order #{order}"


def build(checkpoints):
    model = ScriptedChatModel(responses=[
        AIMessage(content="", tool_calls=[{"name": "issue_refund", "args": {"order": 1042, "amount": 120},
                                           "id": "call_0"}]),
        AIMessage(content="All done."),
    ])
    return create_agent(
        model, tools=[issue_refund],
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"issue_refund": True})],
        checkpointer=SqliteSaver(sqlite3.connect(checkpoints, check_same_thread=False)),
    )


def bridge(agent, callback_url, webhook_secret=None):
    return HITLBridge(agent, defaults={"approver": "alice@example.com"},
                      tools={"issue_refund": {"action": "Refund ${amount} to order #{order}"}},
                      callback_url=callback_url, webhook_secret=webhook_secret)


if __name__ == "__main__":
    checkpoints, callback_url = sys.argv[1:]
    status = bridge(build(checkpoints), callback_url).invoke(
        {"messages": [{"role": "user", "content": "Refund order #1042"}]},
        {"configurable": {"thread_id": "ticket-1042"}})
    print(status.waiting_on[0].id)
'''


def test_the_answer_resumes_the_agent_after_its_process_was_restarted(
    live_server, acme_key, webhook_secret, agent_receiver, tmp_path, monkeypatch
):
    program, checkpoints = tmp_path / "support_agent.py", tmp_path / "agent.sqlite"
    program.write_text(AGENT_PROGRAM)
    refunds_log = tmp_path / "refunds.log"
    environment = {
        "COUNTERSIGN_URL": live_server.url,
        "COUNTERSIGN_API_KEY": acme_key[1],
        "REFUNDS_LOG": str(refunds_log),
    }

    # given: the agent ran in a process of its own until the review, then exited
    started = subprocess.run(
        [sys.executable, str(program), str(checkpoints), agent_receiver.url],
        env={**environment, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    decision_id = started.stdout.strip().splitlines()[-1]
    assert Decision.objects.get(pk=decision_id).action == "Refund $120 to order #1042"

    # when: a new process (new agent, new bridge, same checkpoint file) takes the callbacks,
    # and alice approves
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    restarted = load_module(program)
    agent = restarted.build(str(checkpoints))
    agent_receiver.serve(restarted.bridge(agent, agent_receiver.url, webhook_secret).wsgi_app())
    alice_clicks(decision_id, "approve")
    delivery = deliver_callback(decision_id)

    # then: the tool ran once, in the new process, and the agent finished
    assert delivery.status == Delivery.Status.SENT
    assert refunds_log.read_text() == "1042 120\n"
    state = agent.get_state(THREAD)
    assert not state.next
    assert state.values["messages"][-1].content == "All done."
    agent.checkpointer.conn.close()


def test_a_tool_setting_that_would_break_the_review_is_refused_up_front(agent_client, support_tools):
    agent = support_agent(support_tools, InMemorySaver())

    with pytest.raises(TypeError, match="options cannot be set per tool"):
        HITLBridge(agent, client=agent_client, tools={"issue_refund": {"options": ["yes", "no"]}})
