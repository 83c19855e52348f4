from django.db import transaction
from django.utils import timezone

from audit.chain import event_hash
from audit.models import AuditEvent, ChainHead
from broker.canonical import canonical_json


def audit_record(
    *,
    organization_id: int,
    event: str,
    actor: str,
    decision_id: str | None = None,
    channel: str = "",
    payload: dict | None = None,
) -> AuditEvent:
    """Append one event to the organization's chain.

    Call it inside the transaction of the change it records (it raises RuntimeError outside
    one), so the record and the change commit or roll back together. It locks the chain head
    until that transaction ends: call it after the change's own row updates, so no transaction
    ever waits for a row while holding the head.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    head, _ = ChainHead.objects.select_for_update().get_or_create(organization_id=organization_id)
    fields = {
        "organization_id": organization_id,
        "seq": head.seq + 1,
        "created_at": timezone.now(),
        "decision_id": decision_id,
        "event": event,
        "actor": actor,
        "channel": channel,
        "payload": canonical_json(payload or {}),
    }
    digest = event_hash(prev_hash=head.hash, **fields)
    record = AuditEvent.objects.create(prev_hash=head.hash, hash=digest, **fields)
    head.seq, head.hash = record.seq, digest
    head.save(update_fields=["seq", "hash"])
    return record
