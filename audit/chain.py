"""The published algorithm: how an event's hashes are computed, and how a chain is checked.

    content_hash = SHA-256(canonical JSON of [organization_id, time, decision_id, event,
                                              actor, channel, payload])
    hash         = SHA-256(canonical JSON of [prev_hash, seq, content_hash])

`time` is UTC ISO 8601 with microseconds and an offset ("2026-12-01T10:00:00.123456+00:00"),
`decision_id` is "" when there is none, `payload` the exact canonical JSON text stored, and
the first event's prev_hash is GENESIS_HASH. A writer knows everything the content hash
covers; the sealer alone knows seq and prev_hash (audit/sealing.py).
"""

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.canonical import canonical_json

GENESIS_HASH = "0" * 64


def _sha256(value) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def content_hash(
    *,
    organization_id: int,
    created_at: datetime,
    decision_id: str | None,
    event: str,
    actor: str,
    channel: str,
    payload: str,
) -> str:
    moment = created_at.astimezone(UTC).isoformat(timespec="microseconds")
    return _sha256([organization_id, moment, decision_id or "", event, actor, channel, payload])


def link_hash(*, prev_hash: str, seq: int, content_hash: str) -> str:
    return _sha256([prev_hash, seq, content_hash])


@dataclass(frozen=True)
class ChainProblem:
    organization_id: int
    seq: int
    message: str

    def __str__(self) -> str:
        return f"organization {self.organization_id}, event #{self.seq}: {self.message}"


@dataclass(frozen=True)
class ChainedEvent:
    """What checking one link needs: the event's content and its place in the chain."""

    seq: int
    prev_hash: str
    hash: str
    created_at: datetime
    decision_id: str | None
    event: str
    actor: str
    channel: str
    payload: str
    content_hash: str


def chain_problems(
    events: Iterable[ChainedEvent], *, organization_id: int, expected_size: int | None = None
) -> Iterator[ChainProblem]:
    """Walk one organization's sealed events in seq order and report every break: an edited
    event (its content no longer matches its hash), an inserted, removed or reordered one (a
    gap in seq or a broken prev_hash link). `expected_size`, when known (the newest
    checkpoint's), also catches events removed from the end."""
    expected_seq, expected_prev = 1, GENESIS_HASH
    for event in events:
        if event.seq != expected_seq:
            yield ChainProblem(
                organization_id,
                event.seq,
                f"expected event #{expected_seq} here: events were removed, inserted or reordered",
            )
        if event.prev_hash != expected_prev:
            yield ChainProblem(
                organization_id, event.seq, "prev_hash does not match the previous event's hash"
            )
        recomputed_content = content_hash(
            organization_id=organization_id,
            created_at=event.created_at,
            decision_id=event.decision_id,
            event=event.event,
            actor=event.actor,
            channel=event.channel,
            payload=event.payload,
        )
        if recomputed_content != event.content_hash:
            yield ChainProblem(
                organization_id, event.seq, "content does not match its content hash: the event was altered"
            )
        if link_hash(prev_hash=event.prev_hash, seq=event.seq, content_hash=event.content_hash) != event.hash:
            yield ChainProblem(
                organization_id, event.seq, "hash does not match its content hash and place in the chain"
            )
        expected_seq, expected_prev = event.seq + 1, event.hash
    if expected_size is not None and expected_seq - 1 < expected_size:
        yield ChainProblem(
            organization_id,
            expected_seq,
            f"the chain ends at #{expected_seq - 1} but a checkpoint says it has {expected_size} events: "
            "events were removed from the end",
        )
