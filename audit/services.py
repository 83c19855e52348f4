from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from audit.chain import event_hash
from audit.models import AuditEvent, ChainHead
from broker.canonical import canonical_json


@dataclass(frozen=True)
class AuditEntry:
    """One event to append: what happened, who did it, over which channel, and the facts."""

    event: str
    actor: str
    decision_id: str | None = None
    channel: str = ""
    payload: dict = field(default_factory=dict)


def audit_record_many(*, organization_id: int, entries: list[AuditEntry]) -> list[AuditEvent]:
    """Append events to the organization's chain, in order.

    Call it inside the transaction of the change it records (it raises RuntimeError outside
    one), so the records and the change commit or roll back together. It locks the chain head
    until that transaction ends: call it after the change's own row updates, so no transaction
    ever waits for a row while holding the head. One call for several events takes the lock
    and moves the head once.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    if not entries:
        return []
    head, _ = ChainHead.objects.select_for_update().get_or_create(organization_id=organization_id)
    records, seq, prev_hash = [], head.seq, head.hash
    for entry in entries:
        seq += 1
        fields = {
            "organization_id": organization_id,
            "seq": seq,
            "created_at": timezone.now(),
            "decision_id": entry.decision_id,
            "event": entry.event,
            "actor": entry.actor,
            "channel": entry.channel,
            "payload": canonical_json(entry.payload),
        }
        digest = event_hash(prev_hash=prev_hash, **fields)
        records.append(AuditEvent(prev_hash=prev_hash, hash=digest, **fields))
        prev_hash = digest
    AuditEvent.objects.bulk_create(records)
    head.seq, head.hash = seq, prev_hash
    head.save(update_fields=["seq", "hash"])
    return records


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
