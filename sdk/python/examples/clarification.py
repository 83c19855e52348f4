"""A clarification question: the agent does not know something, asks a person in words, and
carries on with the answer.

Plain LangGraph: `interrupt("a question?")`. The bridge makes any string interrupt a
question answered in words (response "text"), and resumes the graph with the answer as a
string. It waits by long-poll, so it runs against `make dev` with no callback URL.

    export COUNTERSIGN_URL=http://127.0.0.1:8000 COUNTERSIGN_API_KEY=cs_...
    export COUNTERSIGN_APPROVER=alice@example.com     # who is asked (the default)
    python examples/clarification.py

Answer at http://127.0.0.1:8000/dev/outbox/ (the email's button opens a page with a text box).
"""

import os
from typing import TypedDict

from countersign import Countersign, Decision
from countersign.langgraph import InterruptBridge
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class Shipment(TypedDict, total=False):
    order: int
    warehouse: str
    result: str


def say(text: str) -> None:
    print(text, flush=True)


def check_stock(state: Shipment) -> Shipment:
    say(f"  1. order #{state['order']}: both Leeds and Lyon have the item in stock")
    return {}


def choose_warehouse(state: Shipment) -> Shipment:
    # When the answer comes, LangGraph runs this node again from the top and interrupt()
    # returns the answer: keep what comes before it free of side effects.
    answer = interrupt(f"Which warehouse should ship order #{state['order']}: Leeds or Lyon?")
    if answer is None:  # nobody answered before the deadline
        say("  3. no answer in time: using the default, Leeds")
        return {"warehouse": "Leeds"}
    say(f'  3. the answer: "{answer}"')
    return {"warehouse": "Lyon" if "lyon" in answer.lower() else "Leeds"}


def ship(state: Shipment) -> Shipment:
    say(f"  4. shipping order #{state['order']} from {state['warehouse']}")
    return {"result": f"shipped from {state['warehouse']}"}


def build_graph():
    builder = StateGraph(Shipment)
    builder.add_node("check_stock", check_stock)
    builder.add_node("choose_warehouse", choose_warehouse)
    builder.add_node("ship", ship)
    builder.add_edge(START, "check_stock")
    builder.add_edge("check_stock", "choose_warehouse")
    builder.add_edge("choose_warehouse", "ship")
    builder.add_edge("ship", END)
    return builder.compile(checkpointer=InMemorySaver())


def main() -> None:
    base = os.environ.get("COUNTERSIGN_URL", "http://127.0.0.1:8000").rstrip("/")

    def asked(decision: Decision) -> None:
        who = ", ".join(request.address for request in decision.requests)
        say(f"  2. asked {who} in words ({decision.id}); waiting - answer at {base}/dev/outbox/")

    bridge = InterruptBridge(
        build_graph(),
        client=Countersign(),
        defaults={
            "approver": os.environ.get("COUNTERSIGN_APPROVER", "alice@example.com"),
            "timeout_minutes": 30,
        },
        on_forward=asked,
    )
    thread = {"configurable": {"thread_id": "shipment-1042"}}
    bridge.invoke({"order": 1042}, thread)
    status = bridge.wait_and_resume(thread)
    say(f"Done: {status.values['result']}")


if __name__ == "__main__":
    main()
