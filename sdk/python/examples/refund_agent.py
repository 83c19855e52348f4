"""The refund agent: a LangGraph graph that refunds an order only once Countersign says so.

Blocking style: the `approval` node asks and waits by long-poll, so this runs against
`make dev` with no public callback URL. The agent names no approver: the demo organization's
policy decides (made by `make dev`'s set-up, organizations/management/commands/dev_setup.py):

    small-refunds   action contains "refund" and details.amount < 50  -> approved at once
    medium-refunds  details.amount <= 500 -> ask group:finance (finance@, controller@), 30 min
    large-refunds   details.amount > 500  -> ask group:finance, urgency high, escalate to
                                             lead@example.com after 15 minutes

Run it (the key is the one `make dev` prints):

    export COUNTERSIGN_URL=http://127.0.0.1:8000 COUNTERSIGN_API_KEY=cs_...
    python examples/refund_agent.py            # refunds of $20, $120 and $900, in turn
    python examples/refund_agent.py 75         # or the amounts you give

Then answer as finance@example.com at http://127.0.0.1:8000/dev/outbox/.
"""

import os
import sys
from typing import TypedDict

from countersign import Countersign, Decision
from countersign.langgraph import approval_node
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph


class Refund(TypedDict, total=False):
    order: int
    customer: str
    amount: float
    reason: str
    approval: dict  # the outcome, written by the approval node
    result: str


def say(text: str) -> None:
    print(text, flush=True)


def describe(decision: Decision) -> None:
    """Printed as soon as the decision exists: what the policy made of it."""
    base = os.environ.get("COUNTERSIGN_URL", "http://127.0.0.1:8000").rstrip("/")
    rule = decision.policy["name"] if decision.policy else "none"
    say(f"  2. Countersign made {decision.id}: status {decision.status}, policy rule {rule}")
    if decision.is_pending:
        asked = ", ".join(request.address for request in decision.requests) or "nobody yet"
        escalation = decision.raw.get("escalation") or []
        say(f"     asked: {asked}; urgency {decision.urgency}; expires {decision.expires_at:%H:%M} UTC")
        for level in escalation:
            say(f"     escalates to {', '.join(level['approvers'])} after {level['after_minutes']:g} min")
        say(f"  3. waiting (long-poll) - answer at {base}/dev/outbox/")


def build_graph(client: Countersign):
    def receive(state: Refund) -> Refund:
        say(f"  1. refund of ${state['amount']:g} requested for order #{state['order']} ({state['reason']})")
        return {}

    ask_finance = approval_node(
        client,
        action=lambda s: f"Refund ${s['amount']:g} to order #{s['order']}",
        context=lambda s: f"{s['customer']} says: {s['reason']}",
        details=lambda s: {"amount": s["amount"], "order": s["order"], "customer": s["customer"]},
        on_created=describe,
    )

    def issue_refund(state: Refund) -> Refund:
        outcome = state["approval"]
        say(f"  4. approved by {outcome['by']} via {outcome['via']}: issuing the refund")
        return {"result": f"refunded ${state['amount']:g} to order #{state['order']}"}

    def decline(state: Refund) -> Refund:
        outcome = state["approval"]
        why = f" ({outcome['note']})" if outcome["note"] else ""
        say(f"  4. {outcome['status']} by {outcome['by']}{why}: no refund")
        return {"result": f"no refund for order #{state['order']}"}

    builder = StateGraph(Refund)
    builder.add_node("receive", receive)
    builder.add_node("approval", ask_finance)
    builder.add_node("issue_refund", issue_refund)
    builder.add_node("decline", decline)
    builder.add_edge(START, "receive")
    builder.add_edge("receive", "approval")
    builder.add_conditional_edges(
        "approval", lambda s: "issue_refund" if s["approval"]["approved"] else "decline"
    )
    builder.add_edge("issue_refund", END)
    builder.add_edge("decline", END)
    return builder.compile(checkpointer=InMemorySaver())


def main(amounts: list[float]) -> None:
    with Countersign() as client:
        graph = build_graph(client)
        for number, amount in enumerate(amounts, start=1042):
            say(f"\nOrder #{number}")
            request = {
                "order": number,
                "customer": "Ada",
                "amount": amount,
                "reason": "parcel arrived damaged",
            }
            final = graph.invoke(request, {"configurable": {"thread_id": f"refund-{number}"}})
            say(f"  => {final['result']}")


if __name__ == "__main__":
    main([float(arg) for arg in sys.argv[1:]] or [20, 120, 900])
