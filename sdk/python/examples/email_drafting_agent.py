"""The email-drafting agent: drafts a reply, and a person decides: send it, cancel it, or
have it revised with instructions.

Durable style: the graph calls plain `interrupt(...)` and knows nothing of Countersign; an
InterruptBridge forwards each pending interrupt and resumes the graph with the answer. The
graph's state lives in a SQLite checkpoint file, so the process could stop and another one
could pick the thread up. Here the bridge waits by long-poll (wait_and_resume), so it runs
against `make dev` without a public callback URL; in production you would mount
bridge.wsgi_app() at a callback_url instead.

    export COUNTERSIGN_URL=http://127.0.0.1:8000 COUNTERSIGN_API_KEY=cs_...
    export COUNTERSIGN_APPROVER=alice@example.com     # who reviews the drafts (the default)
    python examples/email_drafting_agent.py

Answer at http://127.0.0.1:8000/dev/outbox/: "Send", "Cancel" or "Revise" (write what to
change in the note; a Revise without a note gets a question asking what to change).
The drafting itself is a template so the example runs anywhere; a real agent calls a model.
"""

import os
import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

from countersign import Countersign, Decision
from countersign.langgraph import InterruptBridge
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


def keep_last(_old: Any, new: Any) -> Any:
    return new


class Email(TypedDict, total=False):
    to: str
    subject: str
    facts: str
    instructions: list[str]
    draft: str
    verdict: Annotated[str, keep_last]  # send / cancel / revise
    result: str


def say(text: str) -> None:
    print(text, flush=True)


def write_draft(facts: str, instructions: list[str]) -> str:
    """A stand-in for a model call: a template, and each instruction applied or appended."""
    greeting = "Dear customer," if any("formal" in i.lower() for i in instructions) else "Hi there,"
    lines = [greeting, "", facts, ""]
    if not any("shorter" in i.lower() for i in instructions):
        lines += ["If anything else comes up, just reply to this email and we will sort it out.", ""]
    lines += [f"P.S. {i}" for i in instructions if not any(w in i.lower() for w in ("formal", "shorter"))]
    return "\n".join([*lines, "Best regards,", "The support team"]).strip()


def draft(state: Email) -> Email:
    instructions = state.get("instructions", [])
    text = write_draft(state["facts"], instructions)
    say(f"  draft {len(instructions) + 1}:\n" + "\n".join(f"    | {line}" for line in text.splitlines()))
    return {"draft": text}


def review(state: Email) -> Email:
    # Plain LangGraph: this pauses the graph. The bridge makes it a Countersign decision with
    # three buttons; the outcome comes back as a dict.
    outcome = interrupt(
        {
            "action": f"Send email to {state['to']}: {state['subject']}",
            "context": state["draft"],
            "details": {"to": state["to"], "subject": state["subject"]},
            "options": ["send", "cancel", "revise"],
        }
    )
    verdict = outcome["choice"] if outcome["status"] == "responded" else "cancel"  # expired: do not send
    update: Email = {"verdict": verdict}
    if verdict == "revise":
        # The instructions are the note; without one, ask for them in words.
        how = outcome["note"] or interrupt("What should change in the draft?")
        update["instructions"] = [*state.get("instructions", []), how]
    return update


def send(state: Email) -> Email:
    say(f"  sending to {state['to']} ... sent.")
    return {"result": "sent"}


def cancel(state: Email) -> Email:
    say("  cancelled: nothing sent.")
    return {"result": "cancelled"}


def build_graph(checkpoints: Path):
    builder = StateGraph(Email)
    builder.add_node("draft", draft)
    builder.add_node("review", review)
    builder.add_node("send", send)
    builder.add_node("cancel", cancel)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_conditional_edges(
        "review", lambda s: {"send": "send", "revise": "draft"}.get(s["verdict"], "cancel")
    )
    builder.add_edge("send", END)
    builder.add_edge("cancel", END)
    saver = SqliteSaver(sqlite3.connect(checkpoints, check_same_thread=False))
    return builder.compile(checkpointer=saver)


def main() -> None:
    base = os.environ.get("COUNTERSIGN_URL", "http://127.0.0.1:8000").rstrip("/")
    checkpoints = Path(tempfile.gettempdir()) / "countersign-email-agent.sqlite"
    thread = {"configurable": {"thread_id": f"email-{uuid.uuid4().hex[:8]}"}}

    def forwarded(decision: Decision) -> None:
        asked = ", ".join(request.address for request in decision.requests)
        kind = "question" if decision.response == "text" else " / ".join(decision.options)
        say(f"  -> asked {asked} ({kind}): {decision.id}; answer at {base}/dev/outbox/")

    def resumed(thread_id: str, answers: dict) -> None:
        for value in answers.values():
            shown = value.get("choice") or value.get("status") if isinstance(value, dict) else repr(value)
            note = f', note "{value["note"]}"' if isinstance(value, dict) and value.get("note") else ""
            say(f"  <- answer: {shown}{note}; resuming {thread_id}")

    bridge = InterruptBridge(
        build_graph(checkpoints),
        client=Countersign(),
        defaults={"approver": os.environ.get("COUNTERSIGN_APPROVER", "alice@example.com")},
        on_forward=forwarded,
        on_resume=resumed,
    )
    say(f"Thread {thread['configurable']['thread_id']} (checkpoints in {checkpoints})")
    bridge.invoke(
        {
            "to": "ada@example.com",
            "subject": "Your refund for order #1042",
            "facts": "We have refunded $120 for order #1042; it reaches your card in 3-5 days.",
        },
        thread,
    )
    status = bridge.wait_and_resume(thread)
    say(f"Done: {status.values['result']}")


if __name__ == "__main__":
    main()
