"""The admin report per organization: decisions per day by outcome, time to answer per
approver and per channel (median, p90), escalation and expiry rates, last 30 days, drawn as
server-side SVG."""

from datetime import UTC, timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from decisions import charts
from decisions.models import ApprovalRequest, Decision
from decisions.reports import decision_report, percentile
from decisions.services import (
    decision_answer,
    decision_cancel,
    decision_expire,
)
from tests.conftest import ALICE, CAROL
from tests.factories import DecisionFactory

BOB_SLACK = "slack:U0BOB"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def answer(decision, address: str, choice: str, *, took: timedelta):
    """The approver answers `took` after being notified."""
    request = decision.requests.get(address=address)
    decision_answer(request_id=request.pk, choice=choice, via="email")
    request.refresh_from_db()
    ApprovalRequest.objects.filter(pk=request.pk).update(notified_at=request.answered_at - took)


def created_days_ago(decision, days: int) -> None:
    Decision.objects.filter(pk=decision.pk).update(created_at=timezone.now() - timedelta(days=days))


@pytest.fixture
def month(acme_key, globex_key):
    """Acme's month: today alice approved one (10 min) and bob denied one on Slack (2 h);
    yesterday alice approved one (30 min), one ran out of time after escalating to carol,
    and one was cancelled; three days ago one was asked and is still pending. Also a
    decision from 40 days ago and one of Globex's, which the report must leave out."""
    key = acme_key[0]
    approved = DecisionFactory(api_key=key, action="Refund #1")
    answer(approved, ALICE, "approve", took=timedelta(minutes=10))
    denied = DecisionFactory(api_key=key, action="Refund #2", approvers=(BOB_SLACK,))
    answer(denied, BOB_SLACK, "deny", took=timedelta(hours=2))
    approved_yesterday = DecisionFactory(api_key=key, action="Refund #3")
    answer(approved_yesterday, ALICE, "approve", took=timedelta(minutes=30))
    created_days_ago(approved_yesterday, 1)
    expired = DecisionFactory(api_key=key, action="Refund #4")
    ApprovalRequest.objects.create(decision=expired, address=CAROL, channel="email", level=1)
    Decision.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert decision_expire(decision_id=expired.pk) is not None
    created_days_ago(expired, 1)
    cancelled = DecisionFactory(api_key=key, action="Refund #5")
    decision_cancel(decision=cancelled, actor="api_key:test")
    created_days_ago(cancelled, 1)
    pending = DecisionFactory(api_key=key, action="Refund #6")
    created_days_ago(pending, 3)
    old = DecisionFactory(api_key=key, action="Refund #0")
    answer(old, ALICE, "approve", took=timedelta(days=3))
    created_days_ago(old, 40)
    ApprovalRequest.objects.filter(decision=old).update(answered_at=timezone.now() - timedelta(days=40))
    DecisionFactory(api_key=globex_key[0], action="Globex payroll")
    return key.organization


def test_decisions_per_day_by_outcome(month):
    report = decision_report(organization_id=month.pk)

    today = timezone.now().astimezone(UTC).date()
    assert len(report.days) == 30
    assert report.days[-1] == today
    assert report.days[0] == today - timedelta(days=29)
    assert report.per_day[today] == {"approved": 1, "denied": 1}
    assert report.per_day[today - timedelta(days=1)] == {"approved": 1, "expired": 1, "cancelled": 1}
    assert report.per_day[today - timedelta(days=3)] == {"pending": 1}
    assert sum(sum(day.values()) for day in report.per_day.values()) == report.total == 6
    assert dict(report.status_series()) == {
        "approved": [0] * 28 + [1, 1],
        "denied": [0] * 29 + [1],
        "expired": [0] * 28 + [1, 0],
        "cancelled": [0] * 28 + [1, 0],
        "pending": [0] * 26 + [1, 0, 0, 0],
    }


def test_time_to_answer_per_approver_and_per_channel(month):
    report = decision_report(organization_id=month.pk)

    alice, bob = (next(r for r in report.by_approver if r.label == name) for name in (ALICE, BOB_SLACK))
    assert (alice.answers, alice.median_seconds, alice.p90_seconds) == (2, 1200, pytest.approx(1680))
    assert (bob.answers, bob.median_seconds, bob.p90_seconds) == (1, 7200, 7200)
    assert [r.label for r in report.by_approver] == [ALICE, BOB_SLACK]  # most answers first
    channels = {r.label: (r.answers, r.median_seconds) for r in report.by_channel}
    assert channels == {"email": (2, 1200), "slack": (1, 7200)}


def test_escalation_and_expiry_rates(month):
    report = decision_report(organization_id=month.pk)

    assert (report.escalated, report.timed_out, report.total) == (1, 1, 6)
    assert report.escalation_rate == pytest.approx(1 / 6)
    assert report.expiry_rate == pytest.approx(1 / 6)


def test_an_organization_without_decisions_has_no_rates(globex):
    report = decision_report(organization_id=globex.pk)

    assert report.total == 0
    assert report.escalation_rate is None
    assert report.expiry_rate is None
    assert report.by_approver == report.by_channel == []
    assert report.status_series() == []


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [([5], 0.9, 5), ([1, 2], 0.5, 1.5), ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9, 9.1), ([3, 1, 2], 0.5, 2)],
)
def test_percentile_interpolates_between_ranks(values, fraction, expected):
    assert percentile(values, fraction) == pytest.approx(expected)


# --- the page -----------------------------------------------------------------------------


def report_url(organization) -> str:
    return reverse("admin:organizations_organization_report", args=[organization.pk])


def test_the_report_page_draws_the_charts(admin_client, month):
    response = admin_client.get(report_url(month))

    page = response.content.decode()
    assert response.status_code == 200
    assert page.count("<svg") >= 4
    assert "Decisions per day, by outcome" in page
    assert "approved (2)" in page  # the legend counts the month
    assert f"{timezone.now().astimezone(UTC).date().isoformat()}: 1 denied" in page  # a bar's tooltip
    assert ALICE in page
    assert "20 min" in page  # alice's median
    assert "16.7%" in page  # 1 of 6 escalated, 1 of 6 ran out of time
    assert "<script" not in page.split('id="per-day"')[1]  # charts are pure SVG


def test_the_report_page_of_a_quiet_organization(admin_client, globex):
    page = admin_client.get(report_url(globex)).content.decode()

    assert "no decisions in this period" in page
    assert "No answers in this period." in page
    assert "n/a" in page


def test_an_unknown_organization_is_404(admin_client, db):
    assert admin_client.get("/admin/organizations/organization/999999/report/").status_code == 404
    assert admin_client.get("/admin/organizations/organization/abc/report/").status_code == 404


def test_the_report_needs_permission_to_view_decisions(client, month):
    client.force_login(User.objects.create_user("sam", password="x", is_staff=True))

    assert client.get(report_url(month)).status_code == 403


def test_the_report_is_not_public(client, month):
    response = client.get(report_url(month))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_chart_labels_are_escaped():
    svg = charts.range_bars([('<script>alert("x")</script>', 60, 120, 3)], "a & b")

    assert "<script>" not in svg
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in svg
    assert 'aria-label="a &amp; b"' in svg


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (21, 25), (180, 200), (0.3, 0.5)]
)
def test_axes_end_on_round_numbers(value, ceiling):
    assert charts.nice_ceiling(value) == pytest.approx(ceiling)


@pytest.mark.parametrize(
    ("seconds", "shown"), [(42, "42 s"), (600, "10 min"), (7200, "2.0 h"), (3 * 86400, "3.0 d")]
)
def test_durations_read_naturally(seconds, shown):
    assert charts.human_duration(seconds) == shown
