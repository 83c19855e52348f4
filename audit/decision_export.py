"""The per-decision export: one CSV row per decision, for compliance staff who want to read
"who was asked, who answered what, how fast" without piecing it together from events.

Columns (DECISION_COLUMNS): decision_id, created_at, action, requested_by (the decision's
metadata.requested_by if the agent sent one, else the API key that asked), urgency, asked
(each person asked: address, channel, stage or escalation level, when notified), first_asked_at,
escalations (escalation levels reached), status, answered_by, via, choice, note, answered_at,
time_to_answer_seconds (first notification to the answer, for answers by a person), policy
(the rule that matched), action_hash. Times are UTC ISO 8601. Cells are neutralised against
spreadsheet formulas exactly as in the event export (audit/export.py).

Rows are read in keyset batches of (created_at, id), each batch with two more queries (who was
asked, who asked), so memory holds one batch however many decisions match.
"""

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

from django.db.models import Q

from audit.export import encode_rows, format_time, header_row, neutralise_cell
from audit.models import AuditEvent

DECISION_COLUMNS = (
    "decision_id",
    "created_at",
    "action",
    "requested_by",
    "urgency",
    "asked",
    "first_asked_at",
    "escalations",
    "status",
    "answered_by",
    "via",
    "choice",
    "note",
    "answered_at",
    "time_to_answer_seconds",
    "policy",
    "action_hash",
)
BATCH_SIZE = 1000
# An outcome by these came from no person: no time to answer.
NOT_A_PERSON = ("timeout", "policy")


def _when(moment: datetime | None) -> str:
    return format_time(moment) if moment else ""


def _asked(request) -> str:
    place = f"escalation {request.level}" if request.level else f"stage {request.stage + 1}"
    notified = f"notified {_when(request.notified_at)}" if request.notified_at else "not notified"
    return f"{request.address} ({request.channel}, {place}, {notified})"


def decision_row(decision, requests: list, creator: str) -> list[str]:
    outcome = decision.resolution
    notified = [r.notified_at for r in requests if r.notified_at]
    first_asked = min(notified, default=None)
    answered_at = decision.resolved_at if outcome else None
    to_answer = ""
    if answered_at and first_asked and outcome.via not in NOT_A_PERSON:
        to_answer = f"{(answered_at - first_asked).total_seconds():.0f}"
    requested_by = decision.metadata.get("requested_by") if isinstance(decision.metadata, dict) else None
    cells = [
        decision.pk,
        _when(decision.created_at),
        decision.action,
        str(requested_by or creator),
        decision.urgency,
        "; ".join(_asked(r) for r in requests),
        _when(first_asked),
        str(len({r.level for r in requests if r.level})),
        decision.status,
        str((outcome and outcome.by) or ""),
        str((outcome and outcome.via) or ""),
        str((outcome and outcome.choice) or ""),
        str((outcome and outcome.note) or ""),
        _when(answered_at),
        to_answer,
        str((decision.policy or {}).get("name") or ""),
        decision.action_hash,
    ]
    return [neutralise_cell(cell) for cell in cells]


def decision_batches(decisions) -> Iterator[list]:
    """The decisions in (created_at, id) order, a batch at a time, with their requests."""
    from decisions.models import ApprovalRequest

    decisions = decisions.order_by("created_at", "pk")
    last = None
    while True:
        page = decisions
        if last is not None:
            page = page.filter(Q(created_at__gt=last[0]) | Q(created_at=last[0], pk__gt=last[1]))
        batch = list(page[:BATCH_SIZE])
        if not batch:
            return
        ids = [d.pk for d in batch]
        requests = defaultdict(list)
        for request in ApprovalRequest.objects.filter(decision_id__in=ids).order_by("created_at", "pk"):
            requests[request.decision_id].append(request)
        creators = dict(
            AuditEvent.objects.filter(decision_id__in=ids, event="decision.created").values_list(
                "decision_id", "actor"
            )
        )
        yield [(d, requests[d.pk], creators.get(d.pk, "")) for d in batch]
        last = (batch[-1].created_at, batch[-1].pk)


def decision_export_chunks(
    *, organization_id: int, start: datetime | None = None, end: datetime | None = None
) -> Iterator[bytes]:
    """The organization's decisions created in [start, end), as CSV, header first."""
    from decisions.models import Decision

    decisions = Decision.objects.filter(organization_id=organization_id)
    if start is not None:
        decisions = decisions.filter(created_at__gte=start)
    if end is not None:
        decisions = decisions.filter(created_at__lt=end)
    yield from decision_rows_csv(decisions)


def decision_rows_csv(decisions) -> Iterator[bytes]:
    """Any queryset of decisions (the admin's filtered changelist, say) as CSV, header first."""
    yield header_row(DECISION_COLUMNS)
    for batch in decision_batches(decisions):
        yield encode_rows([decision_row(*item) for item in batch])
