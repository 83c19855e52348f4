from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.chain import content_hash
from audit.models import AuditEvent
from broker.canonical import canonical_json
from broker.compiled_inserts import CompiledInsert

_audit_events = CompiledInsert(AuditEvent)  # every change writes some: its SQL compiled once


@dataclass(frozen=True)
class AuditEntry:
    """One event to append: what happened, who did it, over which channel, and the facts."""

    event: str
    actor: str
    decision_id: str | None = None
    channel: str = ""
    payload: dict = field(default_factory=dict)


def audit_record_many(*, organization_id: int, entries: list[AuditEntry]) -> list[AuditEvent]:
    """Append events to the organization's trail, in order, each with its content hash.

    Call it inside the transaction of the change it records (it raises RuntimeError outside
    one), so the records and the change commit or roll back together. It takes no lock: the
    sealer links committed events into the chain within a couple of seconds (audit/sealing.py),
    in the order they were written here.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    records = []
    for entry in entries:
        fields: dict[str, Any] = {
            "organization_id": organization_id,
            "created_at": timezone.now(),
            "decision_id": entry.decision_id,
            "event": entry.event,
            "actor": entry.actor,
            "channel": entry.channel,
            "payload": canonical_json(entry.payload),
        }
        records.append(AuditEvent(content_hash=content_hash(**fields), **fields))
    return _audit_events.create(records)


def audit_record(
    *,
    organization_id: int,
    event: str,
    actor: str,
    decision_id: str | None = None,
    channel: str = "",
    payload: dict | None = None,
) -> AuditEvent:
    """Append one event (see audit_record_many)."""
    entry = AuditEntry(
        event=event, actor=actor, decision_id=decision_id, channel=channel, payload=payload or {}
    )
    return audit_record_many(organization_id=organization_id, entries=[entry])[0]
