"""From one chain locked per organization to events sealed into the chain after commit (2/3).

Every existing chain is checked with the old algorithm, then carried over whole: each event
keeps its place (seq), gains its content hash and a link under the new algorithm
(audit/chain.py), and each organization's chain gains one `chain.migrated` event recording the
old head and anything the old check found. Each new head is signed as a checkpoint. Nothing
is dropped; a chain that was already broken stays visibly broken (in chain.migrated).
"""

import hashlib

from django.db import migrations

from broker.canonical import canonical_json

LEGACY_GENESIS = "0" * 64


def legacy_event_hash(event, organization_id: int) -> str:
    """The hash as 0001-0004 computed it: everything, place included, in one digest."""
    from datetime import UTC

    fields = [
        event.prev_hash,
        organization_id,
        event.seq,
        event.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        event.decision_id or "",
        event.event,
        event.actor,
        event.channel,
        event.payload,
    ]
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


def _convert_chain(apps, organization_id: int, head, now) -> tuple[int, str]:
    from audit.chain import content_hash, link_hash

    AuditEvent = apps.get_model("audit", "AuditEvent")
    AuditLink = apps.get_model("audit", "AuditLink")
    problems, expected_seq, legacy_prev = [], 1, LEGACY_GENESIS
    seq, prev, changed, links = 0, LEGACY_GENESIS, [], []

    def flush():
        AuditEvent.objects.bulk_update(changed, ["content_hash"])
        AuditLink.objects.bulk_create(links)
        changed.clear()
        links.clear()

    events = AuditEvent.objects.filter(organization_id=organization_id).order_by("seq")
    for event in events.iterator(chunk_size=2000):
        if event.seq != expected_seq or event.prev_hash != legacy_prev:
            problems.append(f"event #{event.seq}: out of place in the old chain")
        if legacy_event_hash(event, organization_id) != event.hash:
            problems.append(f"event #{event.seq}: did not match its old hash")
        expected_seq, legacy_prev = event.seq + 1, event.hash
        event.content_hash = content_hash(
            organization_id=organization_id,
            created_at=event.created_at,
            decision_id=event.decision_id,
            event=event.event,
            actor=event.actor,
            channel=event.channel,
            payload=event.payload,
        )
        seq = event.seq
        current = link_hash(prev_hash=prev, seq=seq, content_hash=event.content_hash)
        links.append(
            AuditLink(
                event_id=event.pk, organization_id=organization_id, seq=seq, prev_hash=prev, hash=current
            )
        )
        changed.append(event)
        prev = current
        if len(changed) >= 2000:
            flush()
    flush()
    if head is not None and (head.seq, head.hash) != (seq, legacy_prev):
        problems.append(f"the old chain head said #{head.seq}, the chain ended at #{seq}")

    fields = {
        "organization_id": organization_id,
        "created_at": now,
        "decision_id": None,
        "event": "chain.migrated",
        "actor": "system",
        "channel": "",
        "payload": canonical_json(
            {"legacy_size": seq, "legacy_head_hash": legacy_prev, "legacy_problems": problems[:100]}
        ),
    }
    marker = AuditEvent.objects.create(
        content_hash=content_hash(**fields), seq=seq + 1, prev_hash="", hash="", **fields
    )
    seq += 1
    current = link_hash(prev_hash=prev, seq=seq, content_hash=marker.content_hash)
    AuditLink.objects.create(
        event_id=marker.pk, organization_id=organization_id, seq=seq, prev_hash=prev, hash=current
    )
    return seq, current


def convert_chains(apps, schema_editor):
    from django.utils import timezone

    from audit.checkpoints import checkpoint_fields

    AuditEvent = apps.get_model("audit", "AuditEvent")
    AuditCheckpoint = apps.get_model("audit", "AuditCheckpoint")
    AuditSeal = apps.get_model("audit", "AuditSeal")
    ChainHead = apps.get_model("audit", "ChainHead")
    now = timezone.now()
    heads = {head.organization_id: head for head in ChainHead.objects.all()}
    organizations = AuditEvent.objects.order_by().values_list("organization_id", flat=True).distinct()
    converted = 0
    for organization_id in sorted(set(organizations)):
        size, head_hash = _convert_chain(apps, organization_id, heads.get(organization_id), now)
        AuditCheckpoint.objects.create(
            **checkpoint_fields(organization_id=organization_id, size=size, head_hash=head_hash, at=now)
        )
        converted += size
    # Where the sealer starts: past everything linked here.
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()::text::bigint")
            horizon = cursor.fetchone()[0]
    else:
        horizon = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    AuditSeal.objects.create(sealed_at=now, horizon=horizon, events=converted)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_sealed_chain")]

    operations = [migrations.RunPython(convert_chains, migrations.RunPython.noop)]
