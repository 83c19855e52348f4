"""OpenAI Agents SDK runs whose `needs_approval` tools are signed off through a live
Countersign by the SDK's ApprovalRunner.

A real `Agent` runs under the real `Runner` with a scripted Model (the Agents SDK takes any
Model class; this one calls the network never): its first turn calls tools, and once their
outputs are in, it answers with them. The run stops with interruptions; the runner asks
alice; alice answers through her real one-click link; the run is approved or rejected on its
RunState and goes on. Blocking runs wait by long-poll; durable runs are kept as
RunState.to_string() in a FileRunStore and resumed by the callback, delivered by running the
outbox attempt to the SDK's receiver on a real port.

Named actors: Acme's support agent asks; alice approves its tool calls.
"""

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from agents import Agent, ModelResponse, RunConfig, Usage, function_tool
from agents.models.interface import Model
from countersign.openai_agents import ApprovalRunner, FileRunStore
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

from decisions.models import Decision
from notifications.models import Delivery
from tests.conftest import ALICE
from tests.sdk_live import (  # noqa: F401 (the agent_client, agent_receiver and webhook_secret fixtures)
    agent_client_fixture,
    agent_receiver_fixture,
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

ASK = "The parcel for order #1042 arrived broken."
REFUND_1042 = ("issue_refund", {"order": 1042, "amount": 120})
REFUND_TOOL = {"issue_refund": {"action": "Refund ${amount} to order #{order}"}}
NO_TRACING = {"run_config": RunConfig(tracing_disabled=True)}  # traces would go to OpenAI


def _kind(item) -> str | None:
    return item.get("type") if isinstance(item, dict) else getattr(item, "type", None)


class ScriptedModel(Model):
    """No LLM: the first turn calls `calls`; once their outputs are in the input, it answers
    "Done: <outputs>". Decided by the input alone, so a process that resumes a run after a
    restart gets the same next turn."""

    def __init__(self, *calls: tuple[str, dict]) -> None:
        self.calls = calls

    async def get_response(self, system_instructions, input, *args, **kwargs) -> ModelResponse:
        items = input if isinstance(input, list) else []
        outputs = [
            item["output"] if isinstance(item, dict) else item.output
            for item in items
            if _kind(item) == "function_call_output"
        ]
        if outputs:
            text = ResponseOutputText(text=f"Done: {'; '.join(outputs)}", type="output_text", annotations=[])
            output = [
                ResponseOutputMessage(
                    id="msg_done", type="message", role="assistant", status="completed", content=[text]
                )
            ]
        else:
            output = [
                ResponseFunctionToolCall(
                    id=f"fc_{index}",
                    call_id=f"call_{index}",
                    type="function_call",
                    name=name,
                    arguments=json.dumps(args),
                )
                for index, (name, args) in enumerate(self.calls)
            ]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError("these tests do not stream")


@pytest.fixture
def refunds() -> list[dict]:
    return []


@pytest.fixture
def support_agent(refunds):
    def build(*calls: tuple[str, dict]) -> Agent:
        @function_tool(needs_approval=True)
        def issue_refund(order: int, amount: int) -> str:
            """Refund an order."""
            refunds.append({"order": order, "amount": amount})
            return f"refunded ${amount} on order #{order}"

        @function_tool(needs_approval=True)
        def close_account(customer: str) -> str:
            """Close a customer's account."""
            return f"closed the account of {customer}"

        @function_tool
        def look_up_order(order: int) -> str:
            """Look an order up (no approval needed)."""
            return f"order #{order}: shipped"

        return Agent(
            name="Support",
            instructions="Help the customer.",
            model=ScriptedModel(*calls),
            tools=[issue_refund, close_account, look_up_order],
        )

    return build


# --- blocking: run_until_done waits by long-poll ----------------------------------------------


def run_while_alice_answers(runner: ApprovalRunner, answer, asks: int = 1):
    """runner.run_until_done_sync() in the agent's thread; alice answers each decision with
    `answer(decision)` in hers. The run's result, and the decisions it asked for."""
    decisions: list = []
    all_asked = threading.Event()

    def note(decision) -> None:
        decisions.append(decision)
        if len(decisions) == asks:
            all_asked.set()

    runner.on_forward = note
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(runner.run_until_done_sync, ASK, timeout=60)
        assert all_asked.wait(timeout=30), "the agent never asked"
        for decision in decisions:
            answer(decision)
        result = run.result(timeout=90)
    return result, decisions


def test_a_blocking_run_waits_for_alices_approval_and_the_tool_runs(agent_client, support_agent, refunds):
    runner = ApprovalRunner(
        support_agent(REFUND_1042),
        client=agent_client,
        defaults={"approver": ALICE},
        tools=REFUND_TOOL,
        run_kwargs=NO_TRACING,
    )

    result, (decision,) = run_while_alice_answers(runner, lambda asked: alice_clicks(asked.id, "approve"))

    assert decision.action == "Refund $120 to order #1042"
    assert decision.details == {"order": 1042, "amount": 120}
    assert decision.options == ["approve", "deny"]
    assert not decision.allow_edit  # the Agents SDK runs a call only as the model made it
    assert decision.metadata["openai_agents"]["tool"] == "issue_refund"
    assert refunds == [{"order": 1042, "amount": 120}]
    assert not result.interruptions
    assert result.final_output == "Done: refunded $120 on order #1042"


def test_alices_denial_with_a_note_is_a_rejection_the_model_reads_and_nothing_runs(
    agent_client, support_agent, refunds
):
    runner = ApprovalRunner(
        support_agent(REFUND_1042), client=agent_client, defaults={"approver": ALICE}, run_kwargs=NO_TRACING
    )

    result, _ = run_while_alice_answers(
        runner, lambda asked: alice_clicks(asked.id, "deny", note="the order was never paid")
    )

    assert refunds == []
    assert result.final_output == (
        f"Done: issue_refund was not run: denied by {ALICE}. Note: the order was never paid"
    )


def test_only_the_tools_that_need_approval_are_asked_about(agent_client, support_agent, refunds):
    runner = ApprovalRunner(
        support_agent(("look_up_order", {"order": 1042}), REFUND_1042),
        client=agent_client,
        defaults={"approver": ALICE},
        run_kwargs=NO_TRACING,
    )

    result, decisions = run_while_alice_answers(runner, lambda asked: alice_clicks(asked.id, "approve"))

    assert [d.metadata["openai_agents"]["tool"] for d in decisions] == ["issue_refund"]
    assert result.final_output == "Done: order #1042: shipped; refunded $120 on order #1042"


# --- durable: RunState in a store, resumed by the callback ------------------------------------


def durable(agent, agent_client, webhook_secret, agent_receiver, store, **fields) -> ApprovalRunner:
    runner = ApprovalRunner(
        agent,
        store=store,
        client=agent_client,
        defaults={"approver": ALICE},
        callback_url=agent_receiver.url,
        webhook_secret=webhook_secret,
        run_kwargs=NO_TRACING,
        **fields,
    )
    agent_receiver.serve(runner.wsgi_app())
    return runner


@pytest.fixture
def store(tmp_path) -> FileRunStore:
    return FileRunStore(tmp_path / "runs")


def test_alices_approval_resumes_the_stored_run_by_callback(
    agent_client, webhook_secret, agent_receiver, store, support_agent, refunds
):
    runner = durable(
        support_agent(REFUND_1042), agent_client, webhook_secret, agent_receiver, store, tools=REFUND_TOOL
    )

    paused = runner.start_sync(ASK, run_id="ticket-1042")

    (decision,) = paused.waiting_on
    assert not paused.done
    assert refunds == []  # nothing runs before alice answers
    assert decision.callback_url == agent_receiver.url
    assert decision.metadata["openai_agents"]["run_id"] == "ticket-1042"
    assert json.loads(store.load("ticket-1042"))["state"]  # the RunState, serialized

    alice_clicks(decision.id, "approve")
    delivery = deliver_callback(decision.id)

    assert delivery.status == Delivery.Status.SENT  # the receiver answered 2xx
    assert refunds == [{"order": 1042, "amount": 120}]
    finished = runner.advance_sync("ticket-1042")  # a retried callback changes nothing
    assert finished.done
    assert finished.resumed == 0
    assert finished.final_output == "Done: refunded $120 on order #1042"
    assert refunds == [{"order": 1042, "amount": 120}]


def test_two_approvals_in_one_turn_resume_the_run_once_both_are_answered(
    agent_client, webhook_secret, agent_receiver, store, support_agent, refunds
):
    agent = support_agent(REFUND_1042, ("close_account", {"customer": "Ada"}))
    runner = durable(agent, agent_client, webhook_secret, agent_receiver, store)

    refund, closing = runner.start_sync(ASK, run_id="ticket-1042").waiting_on

    alice_clicks(refund.id, "approve")
    deliver_callback(refund.id)
    assert not json.loads(store.load("ticket-1042"))["done"]  # one of two answered: still waiting
    assert refunds == []

    alice_clicks(closing.id, "deny", note="she only wants the refund")
    deliver_callback(closing.id)

    assert refunds == [{"order": 1042, "amount": 120}]
    record = json.loads(store.load("ticket-1042"))
    assert record["done"]
    assert record["final_output"] == (
        "Done: refunded $120 on order #1042; close_account was not run: "
        f"denied by {ALICE}. Note: she only wants the refund"
    )


def test_a_cancelled_approval_is_a_rejection_with_the_reason(
    agent_client, webhook_secret, agent_receiver, store, support_agent, refunds
):
    runner = durable(support_agent(REFUND_1042), agent_client, webhook_secret, agent_receiver, store)
    (decision,) = runner.start_sync(ASK, run_id="ticket-1042").waiting_on

    agent_client.cancel(decision.id)
    deliver_callback(decision.id)

    assert refunds == []
    assert json.loads(store.load("ticket-1042"))["final_output"] == (
        "Done: issue_refund was not run: the request for sign-off was cancelled."
    )


def test_a_forged_callback_is_refused_and_resumes_nothing(
    agent_client, webhook_secret, agent_receiver, store, support_agent, refunds
):
    runner = durable(support_agent(REFUND_1042), agent_client, webhook_secret, agent_receiver, store)
    (decision,) = runner.start_sync(ASK, run_id="ticket-1042").waiting_on
    alice_clicks(decision.id, "approve")

    forged = httpx.post(
        agent_receiver.url,
        content=json.dumps({"type": "decision.resolved", "data": {"id": decision.id}}),
        headers={"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1," + "A" * 44},
    )

    assert forged.status_code == 401
    assert refunds == []
    assert not json.loads(store.load("ticket-1042"))["done"]


AGENT_PROGRAM = '''
"""The support agent as a program of its own: it runs until an approval is needed, then exits."""
import json
import os
import sys

from agents import Agent, ModelResponse, RunConfig, Usage, function_tool
from agents.models.interface import Model
from countersign.openai_agents import ApprovalRunner, FileRunStore
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText


class ScriptedModel(Model):
    async def get_response(self, system_instructions, input, *args, **kwargs):
        items = input if isinstance(input, list) else []
        outputs = [i["output"] for i in items
                   if isinstance(i, dict) and i.get("type") == "function_call_output"]
        if outputs:
            text = ResponseOutputText(text="Done: " + "; ".join(outputs), type="output_text", annotations=[])
            output = [ResponseOutputMessage(id="msg_done", type="message", role="assistant",
                                            status="completed", content=[text])]
        else:
            output = [ResponseFunctionToolCall(id="fc_0", call_id="call_0", type="function_call",
                                               name="issue_refund",
                                               arguments='{"order": 1042, "amount": 120}')]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError


@function_tool(needs_approval=True)
def issue_refund(order: int, amount: int) -> str:
    """Refund an order."""
    with open(os.environ["REFUNDS_LOG"], "a") as log:
        log.write(f"{order} {amount}\\n")
    return f"refunded ${amount} on order #{order}"


agent = Agent(name="Support", instructions="Help the customer.", model=ScriptedModel(), tools=[issue_refund])


def runner(runs, callback_url, webhook_secret=None):
    return ApprovalRunner(agent, store=FileRunStore(runs), defaults={"approver": "alice@example.com"},
                          tools={"issue_refund": {"action": "Refund ${amount} to order #{order}"}},
                          callback_url=callback_url, webhook_secret=webhook_secret,
                          run_kwargs={"run_config": RunConfig(tracing_disabled=True)})


if __name__ == "__main__":
    runs, callback_url = sys.argv[1:]
    status = runner(runs, callback_url).start_sync("Refund order #1042", run_id="ticket-1042")
    print(status.waiting_on[0].id)
'''


def test_the_answer_resumes_the_run_after_the_agent_process_was_restarted(
    live_server, acme_key, webhook_secret, agent_receiver, tmp_path, monkeypatch
):
    program, runs, refunds_log = tmp_path / "support_agent.py", tmp_path / "runs", tmp_path / "refunds.log"
    program.write_text(AGENT_PROGRAM)
    environment = {
        "COUNTERSIGN_URL": live_server.url,
        "COUNTERSIGN_API_KEY": acme_key[1],
        "REFUNDS_LOG": str(refunds_log),
    }

    # given: the agent ran in a process of its own until the approval, then exited
    started = subprocess.run(
        [sys.executable, str(program), str(runs), agent_receiver.url],
        env={**environment, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    decision_id = started.stdout.strip().splitlines()[-1]
    assert Decision.objects.get(pk=decision_id).action == "Refund $120 to order #1042"

    # when: a new process (new agent, new runner, same store) takes the callbacks, and alice
    # approves
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    restarted = load_module(program)
    runner = restarted.runner(str(runs), agent_receiver.url, webhook_secret)
    agent_receiver.serve(runner.wsgi_app())
    alice_clicks(decision_id, "approve")
    delivery = deliver_callback(decision_id)

    # then: the tool ran once, in the new process, and the run finished
    assert delivery.status == Delivery.Status.SENT
    assert refunds_log.read_text() == "1042 120\n"
    record = json.loads(restarted.FileRunStore(str(runs)).load("ticket-1042"))
    assert record["done"]
    assert record["final_output"] == "Done: refunded $120 on order #1042"
    assert Decision.objects.filter(metadata__openai_agents__run_id="ticket-1042").count() == 1
