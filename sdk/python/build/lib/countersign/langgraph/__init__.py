"""LangGraph integration: reach a person from a graph, and carry on when they answer.

Blocking style (the process waits, by long-poll): approval_node(...) and @requires_approval.
Durable style (the graph calls plain interrupt(); the answer resumes it, even in another
process): InterruptBridge, with its WSGI / ASGI / Django callback receivers.
"""

from countersign.langgraph.blocking import approval_node, not_approved_message, requires_approval
from countersign.langgraph.bridge import (
    CallbackResult,
    Forwarded,
    InterruptBridge,
    PendingInterrupt,
    ThreadStatus,
)
from countersign.langgraph.shapes import InterruptShape, shape_of

__all__ = [
    "CallbackResult",
    "Forwarded",
    "InterruptBridge",
    "InterruptShape",
    "PendingInterrupt",
    "ThreadStatus",
    "approval_node",
    "not_approved_message",
    "requires_approval",
    "shape_of",
]
