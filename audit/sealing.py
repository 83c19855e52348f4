"""The sealer: gives committed events their place in the chain and signs checkpoints.

Writers append events without any lock between them (audit/services.py), so their ids can
commit out of order: event 101 may be visible while event 100's transaction is still open.
The sealer therefore links only events no running transaction can still add to: on
PostgreSQL, those whose transaction id is older than the oldest transaction of this database
still running when the sealer's snapshot was taken (the horizon); on SQLite, whose writers take turns,
every committed event. Each run links what is new since the previous run's horizon, in the
order it was written, and signs one checkpoint per organization whose chain grew.

One sealer at a time: a transaction-scoped advisory lock on PostgreSQL (a second sealer
finds it taken and does nothing); on SQLite the write lock taken at BEGIN. Beat runs it every
second (AUDIT_SEAL_SECONDS); `manage.py seal_audit` runs it on demand.
"""

from collections import defaultdict
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from audit.chain import GENESIS_HASH, link_hash
from audit.checkpoints import checkpoint_build, publish_on_commit
from audit.models import AuditCheckpoint, AuditEvent, AuditLink, AuditSeal

# pg_try_advisory_xact_lock's key: any constant no other code uses ("cs-seal").
SEAL_LOCK_KEY = 0x63732D7365616C
MAX_EVENTS_PER_RUN = 50_000


@dataclass(frozen=True)
class SealResult:
    events: int
    checkpoints: list[AuditCheckpoint]
    locked_out: bool = False


def _lock_taken() -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])
        return cursor.fetchone()[0]


def _horizon() -> int | None:
    """PostgreSQL: the oldest transaction of this database still running (or, if none, the
    next to start), as of a snapshot taken now. Events of older transactions are committed or
    rolled back: none can appear later.

    Transaction ids are shared by every database of the server, so the snapshot's own xmin
    would let a long transaction in another database hold sealing back; the running ids are
    narrowed to this database's backends (pg_stat_activity) and prepared transactions. The
    snapshot comes first: a transaction it saw running that has ended by the second query is
    visible to the queries after it."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_snapshot()::text")
        snapshot = cursor.fetchone()[0]
        cursor.execute(
            """
            SELECT least(pg_snapshot_xmax(%(s)s::pg_snapshot)::text::bigint, min(running::text::bigint))
            FROM pg_snapshot_xip(%(s)s::pg_snapshot) AS running
            WHERE running::text::bigint %% 4294967296 IN (
                SELECT backend_xid::text::bigint FROM pg_stat_activity
                WHERE datname = current_database() AND backend_xid IS NOT NULL
                UNION ALL
                SELECT transaction::text::bigint FROM pg_prepared_xacts WHERE database = current_database()
            )
            """,
            {"s": snapshot},
        )
        (horizon,) = cursor.fetchone()
        if horizon is None:  # nothing of this database was running
            cursor.execute("SELECT pg_snapshot_xmax(%s::pg_snapshot)::text::bigint", [snapshot])
            (horizon,) = cursor.fetchone()
        return horizon


def _unsealed(previous: int, horizon: int | None):
    events = AuditEvent.objects.filter(link__isnull=True)
    if horizon is None:  # SQLite: ids commit in order
        return events.filter(pk__gt=previous)
    return events.filter(txid__gte=previous, txid__lt=horizon)


def _chain_heads(organization_ids) -> dict[int, tuple[int, str]]:
    heads = dict.fromkeys(organization_ids, (0, GENESIS_HASH))
    newest = (
        AuditLink.objects.filter(organization_id__in=organization_ids)
        .values("organization_id")
        .annotate(seq=Max("seq"))
    )
    wanted = [(row["organization_id"], row["seq"]) for row in newest]
    for organization_id, seq in wanted:
        digest = AuditLink.objects.filter(organization_id=organization_id, seq=seq).values_list(
            "hash", flat=True
        )
        heads[organization_id] = (seq, digest.get())
    return heads


def _insert_links(links: list[AuditLink]) -> None:
    """One INSERT … SELECT FROM unnest(arrays) on PostgreSQL: bulk_create compiles SQL for
    every row, which is most of a seal's time at thousands of events a second."""
    if connection.vendor != "postgresql":
        AuditLink.objects.bulk_create(links, batch_size=2000)
        return
    columns: tuple[list, list, list, list, list] = ([], [], [], [], [])
    for link in links:
        for values, value in zip(
            columns, (link.event_id, link.organization_id, link.seq, link.prev_hash, link.hash), strict=True
        ):
            values.append(value)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditlink (event_id, organization_id, seq, prev_hash, hash) "
            "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::text[])",
            columns,
        )


@transaction.atomic
def audit_seal(*, limit: int = MAX_EVENTS_PER_RUN) -> SealResult:
    """Link every event that can no longer be preceded by another into its organization's
    chain and sign a checkpoint for each chain that grew. Idempotent and safe to run from
    several processes at once (only one does the work). The checkpoints leave the database
    after commit (audit/checkpoints.py)."""
    if not _lock_taken():
        return SealResult(events=0, checkpoints=[], locked_out=True)
    previous = AuditSeal.objects.order_by("-pk").values_list("horizon", flat=True).first() or 0
    horizon = _horizon()
    batch = list(
        _unsealed(previous, horizon)
        .order_by("pk")
        .values_list("pk", "organization_id", "content_hash")[:limit]
    )
    if not batch:
        return SealResult(events=0, checkpoints=[])

    by_organization: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for event_id, organization_id, digest in batch:
        by_organization[organization_id].append((event_id, digest))
    heads = _chain_heads(list(by_organization))
    links, checkpoints, now = [], [], timezone.now()
    for organization_id, events in by_organization.items():
        seq, prev = heads[organization_id]
        for event_id, digest in events:
            seq += 1
            current = link_hash(prev_hash=prev, seq=seq, content_hash=digest)
            links.append(
                AuditLink(
                    event_id=event_id, organization_id=organization_id, seq=seq, prev_hash=prev, hash=current
                )
            )
            prev = current
        checkpoints.append(
            checkpoint_build(organization_id=organization_id, size=seq, head_hash=prev, at=now)
        )
    _insert_links(links)
    AuditCheckpoint.objects.bulk_create(checkpoints)
    # A run cut short by `limit` keeps the old horizon: the rest is picked up next time.
    complete = len(batch) < limit
    # SQLite has no horizon: it reached the last id linked.
    reached = batch[-1][0] if horizon is None else (horizon if complete else previous)
    AuditSeal.objects.create(sealed_at=now, horizon=reached, events=len(links))
    publish_on_commit([checkpoint.organization_id for checkpoint in checkpoints])
    return SealResult(events=len(links), checkpoints=checkpoints)


def seal_until_done(*, rounds: int = 20) -> int:
    """Seal until nothing new is left (what tests and `seal_audit` want): returns events sealed."""
    total = 0
    for _ in range(rounds):
        result = audit_seal()
        total += result.events
        if result.events == 0 and not result.locked_out:
            break
    return total
