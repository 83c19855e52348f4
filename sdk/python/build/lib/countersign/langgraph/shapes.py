"""From an interrupt's value to the decisions put to people, and from their outcomes back to
the value the interrupt is resumed with. Pure functions of JSON: no LangGraph, no I/O.

Recognised values (see the SDK README for the full table):

- a string: a question answered in words; resumed with the answer (a string).
- a Countersign request, a dict with "action" and only decision fields
  (`{"action": …, "details": {…}, "options": [...], "approver": …}`): resumed with the
  outcome as a dict (`{"status", "approved", "choice", "text", "note", "by", …}`).
- LangGraph's HumanInterrupt (`{"action_request": {"action", "args"}, "config":
  {"allow_accept", "allow_edit", "allow_respond", "allow_ignore"}, "description"}`), alone or
  in a list: resumed with a HumanResponse (`{"type": "accept"|"edit"|"response"|"ignore",
  "args": …}`), or a list of them.
- LangChain's HITLRequest (`{"action_requests": [...], "review_configs": [...]}`, what
  HumanInTheLoopMiddleware raises): resumed with `{"decisions": [{"type": "approve"|"edit"|
  "reject"|"respond", …}, …]}`, one per action request.
- LangChain's per-call ToolApprovalRequest (`{"type": "tool_approval", "name", "args", …}`):
  resumed with one such decision.
- anything else: shown to the approver as details; resumed with the outcome dict.

A value with several items (a list of HumanInterrupts, several action requests) becomes one
decision per item, and is resumed once all of them are resolved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from countersign._base import DECISION_FIELDS
from countersign.models import Decision, Outcome

MAX_ACTION_LENGTH = 500  # the API's limit on `action`
NOT_ANSWERED = {
    "expired": "Nobody answered before the deadline.",
    "cancelled": "The request for sign-off was cancelled.",
}


class InterruptShape:
    """How one interrupt value is asked and answered."""

    kind = "value"

    def asks(self) -> list[dict[str, Any]]:
        """One POST /decisions body per item (routing and callback come from the bridge)."""
        raise NotImplementedError

    def resume_value(self, decisions: Sequence[Decision]) -> Any:
        """The resume value, given this shape's decisions in item order, all resolved."""
        raise NotImplementedError


def shape_of(value: Any, response_schema: Any = None) -> InterruptShape:
    """The shape of an interrupt value (see the module docstring)."""
    if isinstance(value, str):
        return Question(value)
    if _is_human_interrupt(value):
        return HumanInterrupts([value], as_list=False)
    if isinstance(value, list) and value and all(_is_human_interrupt(item) for item in value):
        return HumanInterrupts(value, as_list=True)
    if isinstance(value, Mapping):
        if isinstance(value.get("action_requests"), list) and value["action_requests"]:
            return HITLRequest(value)
        if value.get("type") == "tool_approval" and isinstance(value.get("name"), str):
            return ToolApproval(value, response_schema)
        if isinstance(value.get("action"), str) and set(value) <= DECISION_FIELDS | {"action"}:
            return CountersignRequest(value)
    return AnyValue(value)


# --- helpers -------------------------------------------------------------------------------


def _is_human_interrupt(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("action_request"), Mapping)
        and isinstance(value.get("config"), Mapping)
    )


def _action_text(text: str) -> tuple[str, str]:
    """(action, context): a long text is cut for the one-line action and kept whole in context."""
    text = text.strip() or "The agent needs an answer"
    if len(text) <= MAX_ACTION_LENGTH:
        return text, ""
    return text[: MAX_ACTION_LENGTH - 1] + "…", text


def _details(args: Any) -> dict[str, Any]:
    return dict(args) if isinstance(args, Mapping) else {"args": args}


def _outcome(decision: Decision) -> Outcome:
    if decision.outcome is None:  # the bridge only resumes resolved decisions
        raise ValueError(f"{decision.id} is still {decision.status}")
    return decision.outcome


def _reason(outcome: Outcome) -> str:
    """Why it was not approved, in words the agent (or its model) can use."""
    if outcome.note:
        return outcome.note
    if outcome.status in NOT_ANSWERED:
        return NOT_ANSWERED[outcome.status]
    return f"{outcome.status} by {outcome.by}"


def _choice_ask(
    *,
    action: str,
    context: str,
    details: dict[str, Any],
    approve: bool,
    edit: bool,
    others: list[str],
) -> dict[str, Any]:
    """A decision with buttons: approve (editable if asked), then `others`. With no button
    but "respond", it becomes a question answered in words."""
    options = (["approve"] if approve or edit else []) + others
    if options == ["respond"]:
        return {"action": action, "context": context, "details": details, "response": "text"}
    ask: dict[str, Any] = {
        "action": action,
        "context": context,
        "details": details,
        "options": options or ["approve", "deny"],
    }
    if edit:
        ask["allow_edit"] = True
    return ask


# --- shapes --------------------------------------------------------------------------------


@dataclass
class Question(InterruptShape):
    text: str
    kind = "question"

    def asks(self) -> list[dict[str, Any]]:
        action, context = _action_text(self.text)
        return [{"action": action, "context": context, "response": "text"}]

    def resume_value(self, decisions: Sequence[Decision]) -> str | None:
        # The answer in words; None when nobody answered (expired or cancelled).
        return _outcome(decisions[0]).text


@dataclass
class CountersignRequest(InterruptShape):
    request: Mapping[str, Any]
    kind = "countersign"

    def asks(self) -> list[dict[str, Any]]:
        return [dict(self.request)]

    def resume_value(self, decisions: Sequence[Decision]) -> dict[str, Any]:
        return _outcome(decisions[0]).as_dict()


@dataclass
class AnyValue(InterruptShape):
    value: Any
    kind = "value"

    def asks(self) -> list[dict[str, Any]]:
        if isinstance(self.value, Mapping):
            return [{"action": "Review the agent's request", "details": dict(self.value)}]
        return [
            {
                "action": "Review the agent's request",
                "context": json.dumps(self.value, ensure_ascii=False, default=str, indent=2),
            }
        ]

    def resume_value(self, decisions: Sequence[Decision]) -> dict[str, Any]:
        return _outcome(decisions[0]).as_dict()


@dataclass
class HumanInterrupts(InterruptShape):
    """LangGraph's HumanInterrupt (langgraph.prebuilt.interrupt, Agent Inbox)."""

    items: list[Mapping[str, Any]]
    as_list: bool
    kind = "human_interrupt"

    def asks(self) -> list[dict[str, Any]]:
        asks = []
        for item in self.items:
            request, config = item["action_request"], item["config"]
            action, context = _action_text(str(request.get("action") or ""))
            description = str(item.get("description") or "")
            others = [
                name
                for name, allowed in (("respond", "allow_respond"), ("ignore", "allow_ignore"))
                if config.get(allowed)
            ]
            asks.append(
                _choice_ask(
                    action=action,
                    context="\n\n".join(part for part in (description, context) if part),
                    details=_details(request.get("args")),
                    approve=bool(config.get("allow_accept")),
                    edit=bool(config.get("allow_edit")),
                    others=others,
                )
            )
        return asks

    def resume_value(self, decisions: Sequence[Decision]) -> Any:
        responses = [
            self._response(item, _outcome(decision))
            for item, decision in zip(self.items, decisions, strict=True)
        ]
        return responses if self.as_list else responses[0]

    @staticmethod
    def _response(item: Mapping[str, Any], outcome: Outcome) -> dict[str, Any]:
        config = item["config"]
        if outcome.status == "approved":
            if outcome.edited or not config.get("allow_accept"):
                edited = {"action": item["action_request"].get("action"), "args": outcome.details}
                return {"type": "edit", "args": edited}
            return {"type": "accept", "args": None}
        if outcome.status == "responded":
            if outcome.choice == "ignore":
                return {"type": "ignore", "args": None}
            # A text answer, or the "respond" button with its note.
            return {"type": "response", "args": outcome.text or outcome.note or ""}
        # Denied (by a rule or a timeout policy), expired, cancelled: not done.
        if config.get("allow_respond") and not config.get("allow_ignore"):
            return {"type": "response", "args": _reason(outcome)}
        return {"type": "ignore", "args": None}


def _review_decision(allowed: Sequence[str], name: str, outcome: Outcome) -> dict[str, Any]:
    """One HITL decision (LangChain's approve / edit / reject / respond) from an outcome."""
    if outcome.status == "approved":
        if outcome.edited or "approve" not in allowed:
            return {"type": "edit", "edited_action": {"name": name, "args": outcome.details}}
        return {"type": "approve"}
    if outcome.status == "responded":
        return {"type": "respond", "message": outcome.text or outcome.note or ""}
    if "reject" not in allowed and "respond" in allowed:
        return {"type": "respond", "message": _reason(outcome)}
    decision: dict[str, Any] = {"type": "reject"}
    if outcome.note or outcome.status in NOT_ANSWERED:
        decision["message"] = _reason(outcome)
    return decision


def _review_ask(name: str, args: Any, description: str, allowed: Sequence[str]) -> dict[str, Any]:
    action, _ = _action_text(f"Run {name}")
    return _choice_ask(
        action=action,
        context=description,
        details=_details(args),
        approve="approve" in allowed,
        edit="edit" in allowed,
        others=[
            option for decision, option in (("reject", "deny"), ("respond", "respond")) if decision in allowed
        ],
    )


DEFAULT_ALLOWED = ("approve", "edit", "reject")


@dataclass
class HITLRequest(InterruptShape):
    """LangChain's HumanInTheLoopMiddleware, batched mode (langchain.agents.middleware)."""

    request: Mapping[str, Any]
    kind = "hitl_request"

    def _allowed(self, name: str) -> Sequence[str]:
        for config in self.request.get("review_configs") or []:
            if isinstance(config, Mapping) and config.get("action_name") == name:
                return list(config.get("allowed_decisions") or DEFAULT_ALLOWED)
        return DEFAULT_ALLOWED

    def asks(self) -> list[dict[str, Any]]:
        return [
            _review_ask(
                str(request["name"]),
                request.get("args"),
                str(request.get("description") or ""),
                self._allowed(request["name"]),
            )
            for request in self.request["action_requests"]
        ]

    def resume_value(self, decisions: Sequence[Decision]) -> dict[str, Any]:
        requests = self.request["action_requests"]
        return {
            "decisions": [
                _review_decision(self._allowed(request["name"]), request["name"], _outcome(decision))
                for request, decision in zip(requests, decisions, strict=True)
            ]
        }


@dataclass
class ToolApproval(InterruptShape):
    """LangChain's HumanInTheLoopMiddleware, per-call mode: the allowed decisions are the
    ones its response_schema admits."""

    request: Mapping[str, Any]
    response_schema: Any
    kind = "tool_approval"

    def _allowed(self) -> Sequence[str]:
        found = _decision_types_in(self.response_schema)
        return [name for name in ("approve", "edit", "reject", "respond") if name in found] or list(
            DEFAULT_ALLOWED
        )

    def asks(self) -> list[dict[str, Any]]:
        request = self.request
        return [
            _review_ask(
                request["name"], request.get("args"), str(request.get("description") or ""), self._allowed()
            )
        ]

    def resume_value(self, decisions: Sequence[Decision]) -> dict[str, Any]:
        return _review_decision(self._allowed(), self.request["name"], _outcome(decisions[0]))


def _decision_types_in(schema: Any) -> set[str]:
    """The values a JSON Schema allows for a `type` property, wherever they appear."""
    found: set[str] = set()
    if isinstance(schema, Mapping):
        type_property = (schema.get("properties") or {}).get("type")
        if isinstance(type_property, Mapping):
            if isinstance(type_property.get("const"), str):
                found.add(type_property["const"])
            found.update(value for value in type_property.get("enum") or [] if isinstance(value, str))
        for value in schema.values():
            found |= _decision_types_in(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _decision_types_in(value)
    return found
