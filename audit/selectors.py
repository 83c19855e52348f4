from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db import connection
from django.db.models import F, QuerySet

from audit.models import AuditCheckpoint, AuditEvent, AuditSeal

# Keyset batches: each is its own indexed query (organization, seq > last), so a long export
# holds no server-side cursor and costs the same per batch at row 1 and at row 1 000 000.
EXPORT_BATCH_SIZE = 2000


def sealed_events() -> QuerySet[AuditEvent]:
    """Events that have their place in a chain, with it: `seq`, `prev_hash` and `hash`.
    Readers see the trail as sealed (within seconds of each change, audit/sealing.py), so
    what they page through and export never reorders under them."""
    return AuditEvent.objects.filter(link__isnull=False).annotate(
        seq=F("link__seq"), prev_hash=F("link__prev_hash"), hash=F("link__hash")
    )


def audit_events_for(
    *,
    organization_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    decision_id: str | None = None,
    event: str | None = None,
    actor: str | None = None,
) -> QuerySet[AuditEvent]:
    """One organization's sealed events in chain order, `start` ≤ time < `end`. A decision id
    of another organization simply matches nothing: the filter is inside the organization."""
    events = sealed_events().filter(organization_id=organization_id)
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
    return events.select_related("decision").order_by("link__seq")


def audit_event_batches(
    events: QuerySet[AuditEvent],
    *,
    organization_ids: Iterable[int],
    fields: tuple[str, ...],
    size: int = EXPORT_BATCH_SIZE,
) -> Iterator[list[tuple]]:
    """The sealed rows of `events` as lists of `fields` tuples, organization by organization,
    each in seq order: memory holds one batch, however many rows match. `fields` must include
    "seq"."""
    seq_index = fields.index("seq")
    if "seq" not in events.query.annotations:  # a plain queryset, e.g. the admin's selection
        events = events.filter(link__isnull=False).annotate(
            seq=F("link__seq"), prev_hash=F("link__prev_hash"), hash=F("link__hash")
        )
    for organization_id in organization_ids:
        after = 0
        while True:
            batch = list(
                events.filter(link__organization_id=organization_id, link__seq__gt=after)
                .order_by("link__seq")
                .values_list(*fields)[:size]
            )
            if batch:
                yield batch
            if len(batch) < size:
                break
            after = batch[-1][seq_index]


def checkpoints_for(*, organization_id: int) -> QuerySet[AuditCheckpoint]:
    """An organization's checkpoints, newest first."""
    return AuditCheckpoint.objects.filter(organization_id=organization_id).order_by("-size")


def unsealed_events() -> QuerySet[AuditEvent]:
    """Events the sealer has yet to link, found the way the sealer finds them: only among those
    written since its last run's horizon, so the query stays small however long the trail."""
    horizon = AuditSeal.objects.order_by("-pk").values_list("horizon", flat=True).first() or 0
    events = AuditEvent.objects.filter(link__isnull=True)
    if connection.vendor == "postgresql":
        return events.filter(txid__gte=horizon)
    return events.filter(pk__gt=horizon)
