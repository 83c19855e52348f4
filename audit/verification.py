"""What verify_audit checks, and the admin's verify page shows.

1. Each organization's sealed chain, event by event (audit/chain.py): an edited, inserted,
   removed or reordered event breaks a hash or a link.
2. The chain against signed checkpoints, those in the database and those an auditor kept
   outside it: a chain rewritten with every hash recomputed still disagrees with a checkpoint
   whose head hash it cannot forge a signature for; a shortened one is smaller than it.
3. Events left unsealed past AUDIT_SEAL_GRACE: the sealer stopped, or a link was removed.
4. The decisions table against the sealed events: each decision's action and details as
   created, and its status and outcome as resolved. An edited decision row disagrees.

Every problem names the organization and the first event it concerns.
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit import signing
from audit.chain import ChainedEvent, ChainProblem, chain_problems
from audit.checkpoints import VerifiedCheckpoint, verified_checkpoint
from audit.models import AuditCheckpoint, AuditEvent
from audit.selectors import sealed_events
from organizations.models import Organization

DECISION_BATCH = 2000
DATABASE = "the database"
_CHAIN_FIELDS = (
    "seq",
    "prev_hash",
    "hash",
    "created_at",
    "decision_id",
    "event",
    "actor",
    "channel",
    "payload",
    "content_hash",
)


def _database_checkpoints(
    organization_id: int, public_keys: list[str]
) -> tuple[list[VerifiedCheckpoint], list[ChainProblem]]:
    good, problems = [], []
    rows = AuditCheckpoint.objects.filter(organization_id=organization_id).order_by("size")
    for checkpoint in rows.only("size", "body", "signature").iterator(chunk_size=2000):
        document = {"body": checkpoint.body, "signature": checkpoint.signature}
        try:
            good.append(verified_checkpoint(document, public_keys=public_keys, source=DATABASE))
        except ValueError as exc:
            problems.append(
                ChainProblem(organization_id, checkpoint.size, f"checkpoint in the database: {exc}")
            )
    return good, problems


def _walk(organization_id: int, checkpoints: list[VerifiedCheckpoint]) -> Iterator[ChainProblem]:
    """The chain, and at each checkpoint's size, whether the chain's hash there is the one
    that was signed. Only the first disagreement is reported: every later checkpoint
    disagrees too. It names the first event after the last checkpoint that still agreed."""
    wanted: dict[int, list[VerifiedCheckpoint]] = defaultdict(list)
    for checkpoint in checkpoints:
        wanted[checkpoint.size].append(checkpoint)
    rows = (
        sealed_events()
        .filter(link__organization_id=organization_id)
        .order_by("link__seq")
        .values_list(*_CHAIN_FIELDS)
        .iterator(chunk_size=2000)
    )
    disagreement: list[ChainProblem] = []

    def events() -> Iterator[ChainedEvent]:
        agreed = 0
        for row in rows:
            event = ChainedEvent(*row)
            yield event
            for checkpoint in wanted.get(event.seq, ()):
                if disagreement:
                    break
                if checkpoint.head_hash == event.hash:
                    agreed = event.seq
                    continue
                disagreement.append(
                    ChainProblem(
                        organization_id,
                        agreed + 1,
                        f"events #{agreed + 1}..#{event.seq} disagree with the checkpoint of #{event.seq} "
                        f"signed at {checkpoint.sealed_at} ({checkpoint.source}): the first bad event is "
                        f"#{agreed + 1} or later; they were altered, reordered or replaced",
                    )
                )

    expected_size = max((checkpoint.size for checkpoint in checkpoints), default=None)
    last = [0]

    def counted() -> Iterator[ChainedEvent]:
        for event in events():
            last[0] = event.seq
            yield event

    yield from chain_problems(counted(), organization_id=organization_id, expected_size=expected_size)
    yield from disagreement
    # The sealer signs a checkpoint in the same transaction as the links it writes, so the
    # database's newest checkpoint always covers the whole sealed chain.
    covered = max((c.size for c in checkpoints if c.source == DATABASE), default=0)
    if last[0] > covered:
        yield ChainProblem(
            organization_id,
            covered + 1,
            f"events #{covered + 1}..#{last[0]} are covered by no signed checkpoint: checkpoints were "
            "removed, or the chain was extended by someone other than the sealer",
        )


def _unsealed(organization_id: int) -> Iterator[ChainProblem]:
    stale = AuditEvent.objects.filter(
        organization_id=organization_id,
        link__isnull=True,
        created_at__lt=timezone.now() - settings.AUDIT_SEAL_GRACE,
    )
    for event in stale.order_by("pk").only("pk", "event", "created_at")[:10]:
        yield ChainProblem(
            organization_id,
            0,
            f"event id {event.pk} ({event.event}, {event.created_at:%Y-%m-%d %H:%M:%S}) has no place in "
            "the chain: the sealer is not running, or its link was removed",
        )


def _decision_problems(organization_id: int) -> Iterator[ChainProblem]:
    from decisions.models import Decision
    from decisions.services import action_hash

    decisions = (
        Decision.objects.filter(organization_id=organization_id)
        .order_by("pk")
        .only("pk", "status", "action", "details", "action_hash", "outcome")
    )
    batch: list = []
    for decision in decisions.iterator(chunk_size=DECISION_BATCH):
        batch.append(decision)
        if len(batch) == DECISION_BATCH:
            yield from _decision_batch_problems(organization_id, batch, action_hash)
            batch = []
    if batch:
        yield from _decision_batch_problems(organization_id, batch, action_hash)


def _decision_batch_problems(organization_id: int, decisions: list, action_hash) -> Iterator[ChainProblem]:
    """The batch's decisions against their sealed events. A decision can resolve while this
    runs (the row is read first, the events after), so one that disagrees is read again, with
    its events, before it is reported: a decision only ever moves on from pending."""
    from decisions.models import Decision

    suspects = {pk for pk, _ in _decisions_checked(organization_id, decisions, action_hash)}
    if not suspects:
        return
    fresh = list(Decision.objects.filter(pk__in=suspects).order_by("pk"))
    for _, problem in _decisions_checked(organization_id, fresh, action_hash):
        yield problem


def _decisions_checked(
    organization_id: int, decisions: list, action_hash
) -> Iterator[tuple[str, ChainProblem]]:
    ids = [d.pk for d in decisions]
    created: dict[str, tuple[int, dict]] = {}
    resolved: dict[str, tuple[int, dict]] = {}
    events = (
        sealed_events()
        .filter(decision_id__in=ids, event__in=["decision.created", "decision.resolved"])
        .order_by("link__seq")
        .values_list("decision_id", "event", "link__seq", "payload")
    )
    for decision_id, event, seq, payload in events:
        (created if event == "decision.created" else resolved)[decision_id] = (seq, json.loads(payload))
    # Resolved a moment ago: its decision.resolved is committed but not sealed yet.
    being_sealed = set(
        AuditEvent.objects.filter(
            decision_id__in=ids, event="decision.resolved", link__isnull=True
        ).values_list("decision_id", flat=True)
    )
    for decision in decisions:
        if decision.pk in being_sealed and decision.pk not in resolved:
            continue
        for problem in _one_decision_problems(organization_id, decision, created, resolved, action_hash):
            yield decision.pk, problem


def _one_decision_problems(
    organization_id, decision, created, resolved, action_hash
) -> Iterator[ChainProblem]:
    if decision.pk not in created:
        return  # not sealed yet (a moment old), or created before outcomes were recorded
    seq, facts = created[decision.pk]
    if facts.get("action") != decision.action or facts.get("action_hash") != decision.action_hash:
        yield ChainProblem(
            organization_id,
            seq,
            f"decision {decision.pk}: its action differs from the sealed decision.created",
        )
    elif action_hash(decision.action, decision.details) != decision.action_hash:
        yield ChainProblem(
            organization_id,
            seq,
            f"decision {decision.pk}: its details differ from what was put to the approver",
        )
    if decision.pk in resolved:
        seq, facts = resolved[decision.pk]
        sealed_outcome = facts.get("outcome")
        if facts.get("status") != decision.status or (
            sealed_outcome is not None and sealed_outcome != decision.outcome
        ):
            yield ChainProblem(
                organization_id,
                seq,
                f"decision {decision.pk}: the table says {decision.status} "
                f"{_summary(decision.outcome)} but its sealed decision.resolved says "
                f"{facts.get('status')} {_summary(sealed_outcome)}",
            )
    elif decision.status != "pending":
        yield ChainProblem(
            organization_id,
            seq,
            f"decision {decision.pk}: the table says {decision.status}, but no sealed event resolved it",
        )


def _summary(outcome) -> str:
    if not isinstance(outcome, dict):
        return "(no outcome)"
    return f"(choice {outcome.get('choice')!r} by {outcome.get('by')!r} via {outcome.get('via')!r})"


def audit_problems(
    *,
    organization_id: int | None = None,
    external: Iterable[tuple[str, dict]] = (),
    public_keys: list[str] | None = None,
) -> Iterator[ChainProblem]:
    """Every problem found, organization by organization. `external` holds checkpoint
    documents kept outside the database, as (where, document); `public_keys` the keys their
    signatures must verify with (default: the service's own)."""
    keys = public_keys or [signing.public_key_text()]
    outside: dict[int, list[VerifiedCheckpoint]] = defaultdict(list)
    for source, document in external:
        try:
            checkpoint = verified_checkpoint(document, public_keys=keys, source=source)
        except (ValueError, KeyError, TypeError) as exc:
            yield ChainProblem(0, 0, f"checkpoint {source} is not usable: {exc}")
            continue
        outside[checkpoint.organization_id].append(checkpoint)
    organizations = Organization.objects.order_by("pk").values_list("pk", flat=True)
    if organization_id is not None:
        organizations = organizations.filter(pk=organization_id)
    known = set(organizations)
    for missing in sorted(set(outside) - known):
        if organization_id is None:
            yield ChainProblem(
                missing, 1, "a checkpoint names this organization, which the database no longer has"
            )
    for org in organizations:
        with _one_snapshot():
            checkpoints, problems = _database_checkpoints(org, keys)
            yield from problems
            yield from _walk(org, checkpoints + outside.get(org, []))
            yield from _unsealed(org)
            yield from _decision_problems(org)


@contextmanager
def _one_snapshot():
    """Read an organization's checkpoints, chain and decisions as of one moment: the sealer
    commits links and their checkpoint together, and a check that saw the one without the
    other would cry wolf. (PostgreSQL's REPEATABLE READ; a read-only transaction holds no id,
    so it never holds the sealer back. Inside a caller's transaction, that one's view.)"""
    if connection.in_atomic_block or connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield
