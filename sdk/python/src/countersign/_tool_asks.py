"""Per-tool decision fields, shared by the agent-framework integrations (LangChain's
HITLBridge, the OpenAI Agents ApprovalRunner): how a tool call is put to a person.

    tools={"issue_refund": {"action": "Refund ${amount} to order #{order}",
                            "approver": "group:finance", "urgency": "high"}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from countersign._base import DECISION_FIELDS

MAX_ACTION_LENGTH = 500  # the API's limit on `action`

# What maps the answer back stays as the integration makes it: the tool's arguments are the
# details (what an approver may edit), and the buttons are the framework's decisions.
NOT_PER_TOOL = frozenset({"details", "options", "response", "allow_edit", "callback_url"})
PER_TOOL = (DECISION_FIELDS | {"action"}) - NOT_PER_TOOL

ToolAsk = Mapping[str, Any]  # {"action": str | Callable[[args], str], "approver": …, "urgency": …}


def check_tools(owner: str, tools: Mapping[str, ToolAsk]) -> None:
    """TypeError naming the field when a tool's settings could not be asked as given."""
    for name, fields in tools.items():
        unknown = sorted(set(fields) - PER_TOOL)
        if unknown:
            raise TypeError(
                f"{owner}(tools={{{name!r}: …}}): {', '.join(unknown)} cannot be set per tool "
                f"(allowed: {', '.join(sorted(PER_TOOL))})"
            )


def action_text(text: str) -> tuple[str, str]:
    """(action, overflow): a text too long for the one-line action is cut, and kept whole
    as the overflow, for the context."""
    text = text.strip() or "The agent needs an answer"
    if len(text) <= MAX_ACTION_LENGTH:
        return text, ""
    return text[: MAX_ACTION_LENGTH - 1] + "…", text


def _format(template: str | Callable[[dict[str, Any]], str], args: dict[str, Any]) -> str | None:
    try:
        return template(args) if callable(template) else template.format(**args)
    except (KeyError, IndexError, ValueError, AttributeError):
        # The model left out an argument the text names: the approver still sees every
        # argument as details, under the default action.
        return None


def with_tool_fields(
    ask: dict[str, Any], name: str, args: Mapping[str, Any], tools: Mapping[str, ToolAsk]
) -> dict[str, Any]:
    """`ask` (a POST /decisions body for one call of tool `name`) with that tool's fields."""
    if name not in tools:
        return ask
    fields = dict(tools[name])
    template = fields.pop("action", None)
    adjusted = {**ask, **fields}
    if template is not None and (text := _format(template, dict(args))):
        action, overflow = action_text(text)
        adjusted["action"] = action
        if overflow and not fields.get("context"):
            adjusted["context"] = "\n\n".join(part for part in (overflow, ask.get("context")) if part)
    return adjusted
