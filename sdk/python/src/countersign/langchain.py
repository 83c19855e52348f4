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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from countersign._base import DECISION_FIELDS
from countersign.langgraph.bridge import InterruptBridge, PendingInterrupt, ThreadStatus, thread_of
from countersign.langgraph.shapes import _action_text

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

# What the middleware's decision needs stays as the shape made it: the tool's arguments are
# the details (what the approver edits), and the buttons come from allowed_decisions.
NOT_PER_TOOL = frozenset({"details", "options", "response", "allow_edit", "callback_url"})
PER_TOOL = (DECISION_FIELDS | {"action"}) - NOT_PER_TOOL

ToolAsk = Mapping[str, Any]  # {"action": str | Callable[[args], str], "approver": …, "urgency": …}


def _check_tools(tools: Mapping[str, ToolAsk]) -> None:
    for name, fields in tools.items():
        unknown = sorted(set(fields) - PER_TOOL)
        if unknown:
            raise TypeError(
                f"HITLBridge(tools={{{name!r}: …}}): {', '.join(unknown)} cannot be set per tool "
                f"(allowed: {', '.join(sorted(PER_TOOL))})"
            )


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


def _action(template: str | Callable[[dict[str, Any]], str], args: dict[str, Any]) -> str | None:
    try:
        return template(args) if callable(template) else template.format(**args)
    except (KeyError, IndexError, ValueError, AttributeError):
        # The model left out an argument the text names: the approver still sees every
        # argument as details under the default "Run <tool>".
        return None


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
        _check_tools(self.tools)

    def _ask_for(self, interrupt: PendingInterrupt, index: int, ask: dict[str, Any]) -> dict[str, Any]:
        call = tool_call_of(interrupt, index)
        if call is None or call[0] not in self.tools:
            return ask
        name, args = call
        fields = dict(self.tools[name])
        template = fields.pop("action", None)
        adjusted = {**ask, **fields}
        if template is not None and (text := _action(template, args)):
            action, overflow = _action_text(text)
            adjusted["action"] = action
            if overflow and not fields.get("context"):
                adjusted["context"] = "\n\n".join(part for part in (overflow, ask.get("context")) if part)
        return adjusted

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
