"""The admin reads like the product: Groups and Approver groups explained, every time with its
zone, a decision list that does not wrap a word per line, and a decision page of readable
fields rather than raw JSON."""

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from decisions.models import ApproverGroup, Policy
from decisions.services import DecisionSpec, decision_answer, decision_create
from tests.conftest import ALICE, BOB

pytestmark = pytest.mark.django_db

A_TIME_IN_UTC = re.compile(r"\d{1,2} [A-Z][a-z]{2}( \d{4})?, \d{2}:\d{2} UTC")


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def refund(acme_key):
    """A refund routed by Acme's big-refunds rule to finance, approved by alice with a note."""
    acme = acme_key[0].organization
    ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB])
    Policy.objects.create(
        organization=acme,
        name="big-refunds",
        action="route",
        conditions=[{"field": "details.amount", "op": "gte", "value": 500}],
        approvers=["group:finance"],
        escalation=[{"after_minutes": 30, "approvers": ["carol@example.com"]}],
    )
    decision, _ = decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(
            action="Refund $900 to order #1042",
            details={"amount": 900, "customer": "Ada"},
            metadata={"ticket": "T-7"},
        ),
    )
    request = decision.requests.get(address=ALICE)
    return decision_answer(request_id=request.pk, choice="approve", note="checked the invoice", via="email")


def test_the_index_says_what_groups_and_approver_groups_are(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert "Who may use this admin, and what they may change. Not approvers." in page
    assert "Who is asked: <code>group:&lt;name&gt;</code> in a policy or a request asks every member." in page


@pytest.mark.parametrize(
    "url_name", ["auth_group_changelist", "auth_group_add", "decisions_approvergroup_changelist"]
)
def test_both_group_pages_explain_the_difference(admin_client, url_name):
    page = admin_client.get(reverse(f"admin:{url_name}")).content.decode()

    assert "say who may use this admin" in page
    assert "say who is asked to approve" in page


def test_times_are_shown_with_their_zone(admin_client, refund):
    changelist = admin_client.get(reverse("admin:decisions_decision_changelist")).content.decode()
    page = admin_client.get(reverse("admin:decisions_decision_change", args=[refund.pk])).content.decode()

    assert A_TIME_IN_UTC.search(changelist)
    assert "a.m." not in changelist
    assert "p.m." not in changelist
    created = refund.created_at.strftime("%H:%M UTC")
    assert created in changelist
    assert created in page
    assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2} UTC", page)  # the full form, with the year


def test_times_follow_the_configured_zone(admin_client, refund, settings):
    settings.TIME_ZONE = "Asia/Tokyo"

    changelist = admin_client.get(reverse("admin:decisions_decision_changelist")).content.decode()

    assert re.search(r"\d{2}:\d{2} JST", changelist)


def test_the_decision_list_keeps_short_columns_on_one_line(admin_client, refund):
    changelist = admin_client.get(reverse("admin:decisions_decision_changelist")).content.decode()
    css = Path(finders.find("decisions/admin.css")).read_text()

    assert "decisions/admin.css" in changelist
    assert "#result_list td, #result_list th { white-space: nowrap; }" in css
    # the action is the one column that may wrap, and it has room to
    assert 'class="field-action"' in changelist
    assert "#result_list td.field-action { white-space: normal; min-width: 12em;" in css


def test_the_decision_page_reads_as_fields_not_json(admin_client, refund):
    page = admin_client.get(reverse("admin:decisions_decision_change", args=[refund.pk])).content.decode()

    # details and metadata: one row per key
    assert "<tr><th>amount</th><td>900</td></tr>" in page
    assert "<tr><th>customer</th><td>Ada</td></tr>" in page
    assert "<tr><th>ticket</th><td>T-7</td></tr>" in page
    # the outcome: who, how, what they said
    assert f"<tr><th>by</th><td>{ALICE}</td></tr>" in page
    assert "<tr><th>via</th><td>email</td></tr>" in page
    assert "<tr><th>note</th><td>checked the invoice</td></tr>" in page
    # the routing, and the rule that set it, linked
    assert "<tr><th>stage 1</th><td>group:finance (quorum: any)</td></tr>" in page
    assert "<tr><th>after 30 min</th><td>carol@example.com</td></tr>" in page
    rule = Policy.objects.get(name="big-refunds")
    assert (
        f'<a href="{reverse("admin:decisions_policy_change", args=[rule.pk])}">big-refunds (route)</a>'
        in page
    )
    # and the trail: payload as key: value lines
    assert "<strong>choice</strong>: approve</div>" in page
    # no raw JSON of the outcome or the details anywhere
    assert '{"status":' not in page.replace("&quot;", '"')
    assert '{"amount": 900' not in page.replace("&quot;", '"')


def test_the_lists_of_rules_and_groups_read_as_sentences(admin_client, refund):
    rules = admin_client.get(reverse("admin:decisions_policy_changelist")).content.decode()
    groups = admin_client.get(reverse("admin:decisions_approvergroup_changelist")).content.decode()

    assert "details.amount is at least 500" in rules
    assert f"{ALICE}, {BOB}" in groups
    assert f"[&#x27;{ALICE}&#x27;" not in groups


def test_reminder_points_are_typed_as_percentages_not_json(admin_client, acme):
    url = reverse("admin:organizations_organization_change", args=[acme.pk])
    form = {"slug": "acme", "name": "Acme Corp", "default_timeout_minutes": "60"}

    shown = admin_client.get(url).content.decode()
    saved = admin_client.post(url, {**form, "reminder_points": "25%, 0.75, 90%"})
    refused = admin_client.post(url, {**form, "reminder_points": "half"})
    out_of_range = admin_client.post(url, {**form, "reminder_points": "150%"})

    assert 'value="50%, 90%"' in shown  # the default, [0.5, 0.9]
    assert saved.status_code == 302
    acme.refresh_from_db()
    assert acme.reminder_points == [0.25, 0.75, 0.9]
    assert "&#x27;half&#x27;: give each point as a percentage of the wait (50%) or a fraction (0.5)." in (
        refused.content.decode()
    )
    assert "A list of fractions between 0 and 1" in out_of_range.content.decode()
    assert "Enter a valid JSON" not in refused.content.decode()
