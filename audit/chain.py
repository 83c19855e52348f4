"""The hash chain: how an event's hash is computed, and how a whole chain is checked."""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.canonical import canonical_json

GENESIS_HASH = "0" * 64


def event_hash(
    *,
    prev_hash: str,
    organization_id: int,
    seq: int,
    created_at: datetime,
    decision_id: str | None,
    event: str,
    actor: str,
    channel: str,
    payload: str,
) -> str:
    fields = [
        prev_hash,
        organization_id,
        seq,
        created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        decision_id or "",
        event,
        actor,
        channel,
        payload,
    ]
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    organization_id: int
    seq: int
    message: str

    def __str__(self) -> str:
        return f"organization {self.organization_id}, event #{self.seq}: {self.message}"


def chain_problems(events, *, organization_id: int, head_seq: int, head_hash: str) -> Iterator[ChainProblem]:
    """Walk one organization's events in seq order and report every break: an edited row
    (its hash no longer matches), an inserted or deleted row (a gap in seq or a broken
    prev_hash link), or rows removed from the end (the chain head is further along)."""
    expected_seq, expected_prev = 1, GENESIS_HASH
    for event in events:
        if event.seq != expected_seq:
            yield ChainProblem(
                organization_id,
                event.seq,
                f"expected event #{expected_seq} here: rows were removed or inserted",
            )
        if event.prev_hash != expected_prev:
            yield ChainProblem(
                organization_id, event.seq, "prev_hash does not match the previous event's hash"
            )
        recomputed = event_hash(
            prev_hash=event.prev_hash,
            organization_id=organization_id,
            seq=event.seq,
            created_at=event.created_at,
            decision_id=event.decision_id,
            event=event.event,
            actor=event.actor,
            channel=event.channel,
            payload=event.payload,
        )
        if recomputed != event.hash:
            yield ChainProblem(
                organization_id, event.seq, "content does not match its hash: the row was altered"
            )
        expected_seq, expected_prev = event.seq + 1, event.hash
    if expected_seq - 1 != head_seq or expected_prev != head_hash:
        yield ChainProblem(
            organization_id,
            head_seq,
            f"chain ends at #{expected_seq - 1} but its head is #{head_seq}: rows were removed from the end",
        )
