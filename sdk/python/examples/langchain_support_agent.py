"""A LangChain v1 support agent whose refunds a person signs off, through Countersign.

The agent is plain LangChain: `create_agent` with HumanInTheLoopMiddleware gating the
`issue_refund` tool (approve / edit / reject) and `ask_customer` (a person answers for the
customer: respond). A HITLBridge puts each gated call to the approver and resumes the agent
with the middleware's own decisions: approve, edit (the approver changed the amount), reject
(with their note), respond (their answer).

    export COUNTERSIGN_URL=http://127.0.0.1:8000 COUNTERSIGN_API_KEY=cs_...
    export COUNTERSIGN_APPROVER=alice@example.com   # who reviews (the default)
    python examples/langchain_support_agent.py            # blocking: waits by long-poll
    python examples/langchain_support_agent.py --durable  # pauses; a callback would resume it

Answer at http://127.0.0.1:8000/dev/outbox/ (change the amount before approving to see an
edit). The model is scripted with langchain_core's fake chat model, so the example runs with
no LLM and no network: swap in `init_chat_model("openai:gpt-4.1")` for a real one.

--durable keeps the agent's state in a SQLite file and stops once the approver is asked; in
production bridge.wsgi_app() (or asgi_app(), django_view()) mounted at callback_url resumes
it when they answer. Without a public URL, as here, it then resumes by long-poll.
"""

import os
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path

from countersign import Countersign, Decision
from countersign.langchain import HITLBridge
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver


class ScriptedChatModel(FakeMessagesListChatModel):
    """Stands in for an LLM: turn by turn, the replies below (by how many it already gave, so
    a resumed agent gets the right next turn)."""

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.i = min(sum(isinstance(m, AIMessage) for m in messages), len(self.responses) - 1)
        return super()._generate(messages, stop, run_manager, **kwargs)


@tool
def issue_refund(order: int, amount: int) -> str:
    """Refund an order."""
    return f"refunded ${amount} on order #{order}"


@tool
def ask_customer(question: str) -> str:
    """Ask the customer something (a person answers for them)."""
    return ""


def build_agent(checkpointer):
    model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[
                    {"name": "issue_refund", "args": {"order": 1042, "amount": 120}, "id": "call_refund"},
                    {
                        "name": "ask_customer",
                        "args": {"question": "Is the box damaged too?"},
                        "id": "call_ask",
                    },
                ],
            ),
            AIMessage(content="I have handled the ticket."),
        ]
    )
    return create_agent(
        model,
        tools=[issue_refund, ask_customer],
        middleware=[
            HumanInTheLoopMiddleware(
                interrupt_on={
                    "issue_refund": {"allowed_decisions": ["approve", "edit", "reject"]},
                    "ask_customer": {"allowed_decisions": ["respond"]},
                }
            )
        ],
        checkpointer=checkpointer,
    )


def say(text: str) -> None:
    print(text, flush=True)


def asked(decision: Decision) -> None:
    answer = "answered in words" if decision.response == "text" else " / ".join(decision.options)
    say(f"  asked: {decision.action!r} ({decision.id}): {answer}")


def main() -> None:
    durable = "--durable" in sys.argv
    client = Countersign()
    approver = os.environ.get("COUNTERSIGN_APPROVER", "alice@example.com")
    thread = {"configurable": {"thread_id": f"ticket-{uuid.uuid4().hex[:8]}"}}
    ticket = {"messages": [{"role": "user", "content": "My parcel for order #1042 arrived broken."}]}
    settings = {
        "client": client,
        "defaults": {"approver": approver, "timeout_minutes": 30},
        "tools": {
            "issue_refund": {"action": "Refund ${amount} to order #{order}"},
            "ask_customer": {"action": "Answer for the customer: {question}"},
        },
        "on_forward": asked,
    }
    say(f"Reviews go to {approver}; answer at {client.settings.base_url}/dev/outbox/")

    if durable:
        checkpoints = Path(tempfile.gettempdir()) / "countersign-langchain-example.sqlite"
        agent = build_agent(SqliteSaver(sqlite3.connect(checkpoints, check_same_thread=False)))
        # In production: callback_url=… and webhook_secret=…, and bridge.wsgi_app() mounted there.
        bridge = HITLBridge(agent, **settings)
        paused = bridge.invoke(ticket, thread)
        say(f"Paused on {len(paused.waiting_on)} review(s); state saved in {checkpoints}.")
        status = bridge.wait_and_resume(thread)
    else:
        bridge = HITLBridge(build_agent(InMemorySaver()), **settings)
        status = bridge.run(ticket, thread)  # blocks until every review is answered

    for message in status.values["messages"]:
        say(f"  {type(message).__name__}: {message.content or message.tool_calls}")


if __name__ == "__main__":
    main()
