"""What an organization's decisions looked like over the last 30 days (reads only): how many
per day and how they ended, how fast each approver and each channel answers, and how often
decisions escalate or run out of time. Feeds the admin report page."""

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db.models import Count, Exists, OuterRef
from django.db.models.functions import TruncDate
from django.utils import timezone

from decisions.models import ApprovalRequest, Decision, Status, Via

REPORT_DAYS = 30
# Stacking order of the daily chart: final outcomes first, still pending on top.
STATUS_ORDER = [
    Status.APPROVED,
    Status.DENIED,
    Status.RESPONDED,
    Status.EXPIRED,
    Status.CANCELLED,
    Status.PENDING,
]


@dataclass(frozen=True)
class AnswerTimes:
    """How long one approver (or one channel) took to answer: from the moment they were
    notified (or asked, if the notification time is unknown) to their answer."""

    label: str
    answers: int
    median_seconds: float
    p90_seconds: float


@dataclass(frozen=True)
class DecisionReport:
    start: datetime
    end: datetime
    days: list[date]
    per_day: dict[date, dict[str, int]]
    total: int
    escalated: int
    timed_out: int
    by_approver: list[AnswerTimes]
    by_channel: list[AnswerTimes]

    @property
    def escalation_rate(self) -> float | None:
        return self.escalated / self.total if self.total else None

    @property
    def expiry_rate(self) -> float | None:
        return self.timed_out / self.total if self.total else None

    def status_series(self) -> list[tuple[str, list[int]]]:
        """Per status, the count of each day (statuses that never occur are left out)."""
        series = [
            (status, [self.per_day[day].get(status, 0) for day in self.days]) for status in STATUS_ORDER
        ]
        return [(status, counts) for status, counts in series if any(counts)]


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (the usual spreadsheet PERCENTILE)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _answer_times(samples: dict[str, list[float]]) -> list[AnswerTimes]:
    rows = [
        AnswerTimes(label, len(seconds), statistics.median(seconds), percentile(seconds, 0.9))
        for label, seconds in samples.items()
    ]
    return sorted(rows, key=lambda row: (-row.answers, row.label))


def decision_report(
    *, organization_id: int, now: datetime | None = None, days: int = REPORT_DAYS
) -> DecisionReport:
    """The organization's decisions created in the last `days` days (UTC days, today
    included), and the answers given in that time."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    day_list = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    start = datetime.combine(day_list[0], datetime.min.time(), tzinfo=UTC)
    decisions = Decision.objects.filter(
        organization_id=organization_id, created_at__gte=start, created_at__lte=now
    )

    per_day: dict[date, dict[str, int]] = {day: {} for day in day_list}
    counts = (
        decisions.annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in counts:
        if row["day"] in per_day:
            per_day[row["day"]][row["status"]] = row["n"]

    escalated = decisions.filter(
        Exists(ApprovalRequest.objects.filter(decision=OuterRef("pk"), level__gt=0))
    ).count()
    timed_out = decisions.filter(outcome__via=Via.TIMEOUT).count()

    by_approver: dict[str, list[float]] = defaultdict(list)
    by_channel: dict[str, list[float]] = defaultdict(list)
    answers = ApprovalRequest.objects.filter(
        decision__organization_id=organization_id, answered_at__gte=start, answered_at__lte=now
    ).values_list("address", "channel", "created_at", "notified_at", "answered_at")
    for address, channel, asked_at, notified_at, answered_at in answers:
        seconds = max(0.0, (answered_at - (notified_at or asked_at)).total_seconds())
        by_approver[address].append(seconds)
        by_channel[channel].append(seconds)

    return DecisionReport(
        start=start,
        end=now,
        days=day_list,
        per_day=per_day,
        total=decisions.count(),
        escalated=escalated,
        timed_out=timed_out,
        by_approver=_answer_times(by_approver),
        by_channel=_answer_times(by_channel),
    )
