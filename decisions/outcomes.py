"""How a decision was resolved, as a typed value.

Stored in Decision.outcome (JSON), sealed in the audit trail's decision.resolved and returned by
the API: to_json() gives the very dict they always held, key for key and in the same order, so
none of them changes. Python code reads a decision's outcome as `decision.resolution`.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any


def iso(moment: datetime) -> str:
    """An aware time as the API writes it: ISO 8601, UTC as Z."""
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class Outcome:
    status: str
    by: str  # an approver's address or name, "system" (the deadline), "policy:NAME", an API key
    via: str  # a Via value
    at: datetime
    details: dict  # as approved: the decision's details, or an approver's edit of them
    action_hash: str  # of the action and these details
    choice: str | None = None
    text: str | None = None
    note: str | None = None
    # How the person who answered was verified: link, session or passkey (decisions.models.
    # Verification); None when nobody answered (the deadline, a policy rule, a cancel).
    verified: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "choice": self.choice,
            "text": self.text,
            "note": self.note,
            "by": self.by,
            "via": self.via,
            "at": iso(self.at),
            "details": self.details,
            "action_hash": self.action_hash,
            "verified": self.verified,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Outcome":
        return cls(
            status=data["status"],
            choice=data.get("choice"),
            text=data.get("text"),
            note=data.get("note"),
            by=data["by"],
            via=data["via"],
            at=datetime.fromisoformat(data["at"]),
            details=data["details"],
            action_hash=data["action_hash"],
            verified=data.get("verified"),  # absent from outcomes stored before it existed
        )
