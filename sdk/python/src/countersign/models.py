"""Typed views of the API's JSON: the decision object, its outcome, who was asked.

Each keeps the JSON it was read from in `raw`, so fields the service adds later are never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

Status = Literal["pending", "approved", "denied", "responded", "expired", "cancelled"]
Via = Literal["email", "slack", "teams", "web", "api", "timeout", "policy"]
Urgency = Literal["low", "normal", "high", "critical"]
ResponseType = Literal["choice", "text"]
OnTimeout = Literal["expire", "deny", "approve"]
# How sure the service must be of who answers (asked), or how sure it was (an outcome's `verified`).
Verification = Literal["link", "session", "passkey"]

RESOLVED: frozenset[str] = frozenset({"approved", "denied", "responded", "expired", "cancelled"})
ANSWERED_BY_A_PERSON: frozenset[str] = frozenset({"email", "slack", "web"})


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Outcome:
    """How a decision ended. `details` is what was finally approved (after any edit)."""

    decision_id: str
    status: Status
    choice: str | None
    text: str | None
    note: str | None
    by: str
    via: Via
    at: datetime | None
    details: dict[str, Any]
    action_hash: str
    edited: bool  # the approver changed the details before approving
    # How the person who answered was verified; None when nobody answered (timeout, policy, cancel).
    verified: Verification | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @property
    def denied(self) -> bool:
        return self.status == "denied"

    @property
    def answered_in_time(self) -> bool:
        """False when it expired or was cancelled: nobody (and no rule) made the call."""
        return self.status in ("approved", "denied", "responded")

    @classmethod
    def from_json(cls, data: dict[str, Any], *, decision_id: str, asked_action_hash: str) -> Outcome:
        return cls(
            decision_id=decision_id,
            status=data["status"],
            choice=data.get("choice"),
            text=data.get("text"),
            note=data.get("note"),
            by=data.get("by", ""),
            via=data.get("via", "api"),
            at=parse_time(data.get("at")),
            details=data.get("details") or {},
            action_hash=data.get("action_hash", ""),
            edited=bool(data.get("action_hash")) and data.get("action_hash") != asked_action_hash,
            verified=data.get("verified"),
            raw=data,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, e.g. for a LangGraph state or a checkpoint."""
        return {
            "decision_id": self.decision_id,
            "status": self.status,
            "approved": self.approved,
            "choice": self.choice,
            "text": self.text,
            "note": self.note,
            "by": self.by,
            "via": self.via,
            "at": self.raw.get("at"),
            "details": self.details,
            "edited": self.edited,
        }


@dataclass(frozen=True)
class ApprovalRequest:
    """One person (or channel) asked: at which stage or escalation level, and what came of it."""

    address: str
    channel: str
    group: str | None
    on_behalf_of: str | None  # the away approver this delegate was asked for
    stage: int
    level: int
    state: str
    asked_at: datetime | None
    notified_at: datetime | None
    answered_at: datetime | None
    answered_via: str | None
    choice: str | None
    note: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApprovalRequest:
        return cls(
            address=data.get("address", ""),
            channel=data.get("channel", ""),
            group=data.get("group"),
            on_behalf_of=data.get("on_behalf_of"),
            stage=data.get("stage", 0),
            level=data.get("level", 0),
            state=data.get("state", ""),
            asked_at=parse_time(data.get("asked_at")),
            notified_at=parse_time(data.get("notified_at")),
            answered_at=parse_time(data.get("answered_at")),
            answered_via=data.get("answered_via"),
            choice=data.get("choice"),
            note=data.get("note"),
        )


@dataclass(frozen=True)
class Decision:
    id: str
    status: Status
    action: str
    context: str
    details: dict[str, Any]
    options: list[str]
    response: ResponseType
    allow_edit: bool
    urgency: Urgency
    verification: Verification
    requested_by: str | None  # who the agent acts for: never asked, can never approve it
    distinct_stage_approvers: bool  # nobody approves two stages
    created_at: datetime | None
    expires_at: datetime | None
    resolved_at: datetime | None
    metadata: dict[str, Any]
    callback_url: str | None
    action_hash: str
    outcome: Outcome | None
    requests: list[ApprovalRequest]
    policy: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def is_pending(self) -> bool:
        return self.status == "pending"

    @property
    def is_resolved(self) -> bool:
        return self.status in RESOLVED

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        decision_id = data["id"]
        asked_hash = data.get("action_hash", "")
        outcome = data.get("outcome")
        return cls(
            id=decision_id,
            status=data["status"],
            action=data.get("action", ""),
            context=data.get("context", ""),
            details=data.get("details") or {},
            options=list(data.get("options") or []),
            response=data.get("response", "choice"),
            allow_edit=bool(data.get("allow_edit", False)),
            urgency=data.get("urgency", "normal"),
            verification=data.get("verification", "link"),
            requested_by=data.get("requested_by") or None,  # the service sends "" for none
            distinct_stage_approvers=bool(data.get("distinct_stage_approvers", True)),
            created_at=parse_time(data.get("created_at")),
            expires_at=parse_time(data.get("expires_at")),
            resolved_at=parse_time(data.get("resolved_at")),
            metadata=data.get("metadata") or {},
            callback_url=data.get("callback_url"),
            action_hash=asked_hash,
            outcome=(
                Outcome.from_json(outcome, decision_id=decision_id, asked_action_hash=asked_hash)
                if isinstance(outcome, dict)
                else None
            ),
            requests=[ApprovalRequest.from_json(item) for item in data.get("requests") or []],
            policy=data.get("policy"),
            raw=data,
        )


@dataclass(frozen=True)
class DecisionPage:
    """One page of GET /decisions, newest first. Pass `next_cursor` back to get the next."""

    results: list[Decision]
    next_cursor: str | None
    previous_cursor: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DecisionPage:
        return cls(
            results=[Decision.from_json(item) for item in data.get("results") or []],
            next_cursor=_cursor_of(data.get("next")),
            previous_cursor=_cursor_of(data.get("previous")),
        )


def _cursor_of(url: str | None) -> str | None:
    # The API gives whole URLs; the cursor is all a caller needs (the base URL may differ
    # behind a proxy).
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("cursor")
    return values[0] if values else None


@dataclass(frozen=True)
class WebhookEvent:
    """A verified callback: `{"type": "decision.resolved", "timestamp", "data": <decision>}`."""

    id: str  # the webhook-id header: the same on every retry of one delivery
    type: str
    timestamp: datetime | None
    decision: Decision
    raw: dict[str, Any] = field(repr=False, compare=False)
