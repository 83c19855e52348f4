from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db.models import QuerySet

from audit.chain import ChainProblem, chain_problems
from audit.models import AuditEvent, ChainHead

# Keyset batches: each is its own indexed query (organization, seq > last), so a long export
# holds no server-side cursor and costs the same per batch at row 1 and at row 1 000 000.
EXPORT_BATCH_SIZE = 2000


def audit_events_for(
    *,
    organization_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    decision_id: str | None = None,
    event: str | None = None,
    actor: str | None = None,
) -> QuerySet[AuditEvent]:
    """One organization's events in chain order, `start` ≤ time < `end`. A decision id of
    another organization simply matches nothing: the filter is inside the organization."""
    events = AuditEvent.objects.filter(organization_id=organization_id)
    if start is not None:
        events = events.filter(created_at__gte=start)
    if end is not None:
        events = events.filter(created_at__lt=end)
    if decision_id:
        events = events.filter(decision_id=decision_id)
    if event:
        events = events.filter(event=event)
    if actor:
        events = events.filter(actor=actor)
    return events.select_related("decision").order_by("seq")


def audit_event_batches(
    events: QuerySet[AuditEvent],
    *,
    organization_ids: Iterable[int],
    fields: tuple[str, ...],
    size: int = EXPORT_BATCH_SIZE,
) -> Iterator[list[tuple]]:
    """The rows of `events` as lists of `fields` tuples, organization by organization, each in
    seq order: memory holds one batch, however many rows match. `fields` must include "seq"."""
    seq_index = fields.index("seq")
    for organization_id in organization_ids:
        after = 0
        while True:
            batch = list(
                events.filter(organization_id=organization_id, seq__gt=after)
                .order_by("seq")
                .values_list(*fields)[:size]
            )
            if batch:
                yield batch
            if len(batch) < size:
                break
            after = batch[-1][seq_index]


def audit_chain_problems(*, organization_id: int | None = None) -> Iterator[ChainProblem]:
    """Every break in the chains of all organizations (or one). Streams rows, so it runs in
    constant memory however long the trail."""
    heads = ChainHead.objects.order_by("organization_id")
    if organization_id is not None:
        heads = heads.filter(organization_id=organization_id)
    for head in heads:
        events = (
            AuditEvent.objects.filter(organization_id=head.organization_id)
            .order_by("seq")
            .only(
                "seq",
                "created_at",
                "decision_id",
                "event",
                "actor",
                "channel",
                "payload",
                "prev_hash",
                "hash",
            )
            .iterator(chunk_size=2000)
        )
        yield from chain_problems(
            events, organization_id=head.organization_id, head_seq=head.seq, head_hash=head.hash
        )
    orphaned = AuditEvent.objects.exclude(organization_id__in=ChainHead.objects.values("organization_id"))
    if organization_id is not None:
        orphaned = orphaned.filter(organization_id=organization_id)
    for event in orphaned.only("organization_id", "seq")[:100]:
        yield ChainProblem(
            event.organization_id, event.seq, "event belongs to no chain head: the head was removed"
        )
