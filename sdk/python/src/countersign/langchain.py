"""LangChain v1 agents: HumanInTheLoopMiddleware's reviews, answered through Countersign.

`create_agent(..., middleware=[HumanInTheLoopMiddleware(interrupt_on=…)], checkpointer=…)`
pauses before a gated tool call with a LangGraph interrupt whose value is a `HITLRequest`
(batched mode) or a `ToolApprovalRequest` (per-call mode). `HITLBridge` puts each action
request to a person as one Countersign decision and resumes the agent with the decisions the
middleware expects:

- approve: an *Approve* button; approved → `{"type": "approve"}`.
- edit: the tool's arguments are editable before approving; approved with changes →
  `{"type": "edit", "edited_action": {"name", "args": <as edited>}}`.
- reject: a *Deny* button (with a note) → `{"type": "reject", "message": <note>}`; a review
  that expired or was cancelled is a reject too, with the reason as its message.
- respond: a *Respond* button (only respond: a question answered in words) →
  `{"type": "respond", "message": <the note or answer>}`.

Two ways to wait, as for any InterruptBridge:

    bridge = HITLBridge(agent, defaults={"approver": "alice@example.com"},
                        tools={"issue_refund": {"action": "Refund ${amount} to order #{order}"}})
    status = bridge.run({"messages": [...]}, config)      # blocking: long-polls until done

    bridge = HITLBridge(agent, defaults=…, callback_url=…, webhook_secret=…)
    bridge.invoke({"messages": [...]}, config)            # durable: runs until it waits
    app = bridge.wsgi_app()                               # the callback resumes the agent

This module imports neither LangChain nor the middleware: it reads their interrupt values,
whose shapes are documented (countersign.langgraph.shapes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from countersign._tool_asks import ToolAsk, check_tools, with_tool_fields
from countersign.langgraph.bridge import InterruptBridge, PendingInterrupt, ThreadStatus, thread_of

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig


def tool_call_of(interrupt: PendingInterrupt, index: int) -> tuple[str, dict[str, Any]] | None:
    """(tool name, arguments) of item `index` of a HumanInTheLoopMiddleware interrupt, or
    None for any other interrupt."""
    value = interrupt.value
    if interrupt.shape.kind == "hitl_request":
        request = value["action_requests"][index]
    elif interrupt.shape.kind == "tool_approval":
        request = value
    else:
        return None
    args = request.get("args")
    return str(request["name"]), dict(args) if isinstance(args, Mapping) else {}


@dataclass
class HITLBridge(InterruptBridge):
    """An InterruptBridge for agents built with `create_agent` and HumanInTheLoopMiddleware.

    Everything InterruptBridge takes (defaults, callback_url, webhook_secret, name, …), and:

    tools: per tool name, decision fields for its reviews: "action", a format string of the
           tool's arguments ("Refund ${amount} to order #{order}") or a function of them,
           instead of "Run <tool>"; and routing, urgency, timeout, escalation, context,
           metadata. A tool that names approvers is routed only by them.
    """

    tools: Mapping[str, ToolAsk] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_tools("HITLBridge", self.tools)

    def _ask_for(self, interrupt: PendingInterrupt, index: int, ask: dict[str, Any]) -> dict[str, Any]:
        call = tool_call_of(interrupt, index)
        return ask if call is None else with_tool_fields(ask, call[0], call[1], self.tools)

    # --- blocking style ---------------------------------------------------------------------

    def run(self, input: Any, config: RunnableConfig, *, timeout: float | None = None) -> ThreadStatus:
        """Run the agent and wait (by long-poll) for every review it asks for, resuming it
        after each answer, until it finishes or `timeout` seconds pass with a review pending.
        Needs a checkpointer (HumanInTheLoopMiddleware does), but InMemorySaver will do."""
        self.graph.invoke(input, config, **self._invoke_kwargs(thread_of(config)))
        return self.wait_and_resume(config, timeout=timeout)

    async def arun(self, input: Any, config: RunnableConfig, *, timeout: float | None = None) -> ThreadStatus:
        await self.graph.ainvoke(input, config, **self._invoke_kwargs(thread_of(config)))
        return await self.await_and_resume(config, timeout=timeout)


__all__ = ["HITLBridge", "tool_call_of"]
