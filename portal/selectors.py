"""Reads for the approver portal. Every query starts from the signed-in approver's own
requests: a decision nobody asked them about, in any organization, is never read."""

from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from audit.models import AuditEvent
from broker.errors import NotFound
from decisions.models import ApprovalRequest, Decision, Status
from organizations.models import ApiKey
from portal.models import Approver

MAX_PENDING_ROWS = 200
HISTORY_PAGE_SIZE = 50
MAX_SEARCH_LENGTH = 200
URGENCY_RANK = Case(
    When(decision__urgency="critical", then=Value(0)),
    When(decision__urgency="high", then=Value(1)),
    When(decision__urgency="normal", then=Value(2)),
    default=Value(3),
    output_field=IntegerField(),
)


@dataclass(frozen=True)
class InboxRow:
    request: ApprovalRequest
    decision: Decision
    agent: str  # the API key that asked, by name


def session_epoch(address: str) -> int | None:
    return Approver.objects.filter(address=address).values_list("session_epoch", flat=True).first()


def _mine(address: str) -> QuerySet[ApprovalRequest]:
    return ApprovalRequest.objects.filter(address__iexact=address).select_related("decision__organization")


def _searched(requests: QuerySet[ApprovalRequest], search: str) -> QuerySet[ApprovalRequest]:
    if not search:
        return requests
    return requests.filter(
        Q(decision__action__icontains=search)
        | Q(decision__context__icontains=search)
        | Q(decision__organization__name__icontains=search)
        | Q(decision_id=search)
    )


def asking_agents(decisions: list[Decision]) -> dict[str, str]:
    """decision id → the name of the API key that created it (its prefix if unnamed), read
    from the decision.created audit events of those decisions' organizations."""
    events = AuditEvent.objects.filter(
        event="decision.created", decision_id__in=[d.id for d in decisions]
    ).values_list("organization_id", "decision_id", "actor")
    prefixes = {(org, actor.removeprefix("api_key:")) for org, _, actor in events}
    names = {
        (org, prefix): name or f"{prefix}…"
        for org, prefix, name in ApiKey.objects.filter(
            organization_id__in={org for org, _ in prefixes}, prefix__in={p for _, p in prefixes}
        ).values_list("organization_id", "prefix", "name")
    }
    return {
        decision_id: names.get((org, actor.removeprefix("api_key:")), actor)
        for org, decision_id, actor in events
    }


def _rows(requests: list[ApprovalRequest]) -> list[InboxRow]:
    # One row per decision: a person asked by email and on Slack answers once.
    unique = list({r.decision_id: r for r in reversed(requests)}.values())[::-1]
    agents = asking_agents([r.decision for r in unique])
    return [InboxRow(r, r.decision, agents.get(r.decision_id, "")) for r in unique]


def inbox_pending(*, address: str, search: str = "") -> list[InboxRow]:
    """What waits for this approver's answer, in every organization: most urgent first, then
    the soonest deadline."""
    requests = (
        _searched(_mine(address), search)
        .filter(
            state=ApprovalRequest.State.PENDING,
            decision__status=Status.PENDING,
            decision__expires_at__gt=timezone.now(),
        )
        .annotate(urgency_rank=URGENCY_RANK)
        .order_by("urgency_rank", "decision__expires_at", "decision_id", "channel")
    )
    return _rows(list(requests[:MAX_PENDING_ROWS]))


def inbox_history(*, address: str, search: str = "", page: int = 1) -> tuple[Page, list[InboxRow]]:
    """What this approver answered, newest first."""
    requests = (
        _searched(_mine(address), search)
        .filter(state=ApprovalRequest.State.ANSWERED)
        .order_by("-answered_at", "-pk")
    )
    paginated = Paginator(requests, HISTORY_PAGE_SIZE).get_page(page)
    return paginated, _rows(list(paginated.object_list))


def inbox_decision(*, address: str, decision_id: str) -> tuple[Decision, ApprovalRequest, str]:
    """A decision this approver was asked about, their request for it (the open one first)
    and the agent that asked. Anything else is NotFound, exactly like a decision that does not
    exist: another approver's or another organization's is never revealed."""
    request = (
        _mine(address)
        .filter(decision_id=decision_id)
        .annotate(
            open_first=Case(
                When(state=ApprovalRequest.State.PENDING, then=Value(0)),
                When(state=ApprovalRequest.State.ANSWERED, then=Value(1)),
                default=Value(2),
                output_field=IntegerField(),
            )
        )
        .order_by("open_first", "-stage", "channel")
        .first()
    )
    if request is None:
        raise NotFound(f"No decision {decision_id} was put to you.")
    return request.decision, request, asking_agents([request.decision]).get(decision_id, "")
