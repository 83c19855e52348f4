from collections.abc import Iterator

from audit.chain import ChainProblem, chain_problems
from audit.models import AuditEvent, ChainHead


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
