"""The admin in a real headless Chromium: an operator signs in, writes a policy with the row
editors (JavaScript included), asks which rule would match a refund, reads a decision's page
and the decision list, whose short columns stay on one line.

Needs Debian's `chromium` (/usr/bin/chromium), as tests/test_browser_approval.py does: skipped
where it is missing, failed in CI. Set SCREENSHOTS_DIR (or run `make screenshots-admin`) to
save the pictures docs/ADMIN.md shows: docs/screenshots/admin-*.png.
"""

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from decisions.models import ApproverGroup, Policy
from decisions.services import DecisionSpec, decision_answer, decision_create
from tests.conftest import ALICE, BOB, CAROL

pytestmark = pytest.mark.django_db(transaction=True)

DESKTOP = {"width": 1440, "height": 900}
PASSWORD = "correct horse battery staple"
WIDER_THAN_THE_WINDOW = "document.documentElement.scrollWidth > document.documentElement.clientWidth"
# How many lines a cell's text takes: the distinct tops of its line boxes.
LINES = """cell => {
  const range = document.createRange();
  range.selectNodeContents(cell);
  return new Set(Array.from(range.getClientRects()).map(rect => Math.round(rect.top))).size;
}"""


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(15_000)  # bounds a failing test; a passing one never waits it out
    yield context.new_page()
    context.close()


@pytest.fixture
def acme_world(acme_key, settings):
    """Acme's finance group, a rule that approves small refunds and one that sends the others to
    finance, a few decisions (a refund routed by that rule and approved by alice with a note)
    and an operator, olivia, who may use the admin."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    acme = acme_key[0].organization
    ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB])
    Policy.objects.create(
        organization=acme,
        name="small-refunds",
        position=1,
        action="approve",
        conditions=[{"field": "details.amount", "op": "lt", "value": 50}],
    )
    Policy.objects.create(
        organization=acme,
        name="refunds",
        position=5,
        action="route",
        conditions=[{"field": "action", "op": "contains", "value": "refund"}],
        approvers=["group:finance"],
        timeout_minutes=60,
        escalation=[{"after_minutes": 30, "approvers": [CAROL]}],
    )
    for action in ["Deploy release 4.2 to production", "Rotate the payments API key"]:
        decision_create(
            api_key=acme_key[0],
            spec=DecisionSpec(action=action, stages=[{"approvers": [BOB], "quorum": "any"}]),
        )
    refund, _ = decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(
            action="Refund $900 to order #1042",
            details={"amount": 900, "currency": "EUR", "customer": "Ada Lovelace"},
        ),
    )
    request = refund.requests.get(address=ALICE)
    refund = decision_answer(request_id=request.pk, choice="approve", note="Invoice checked.", via="email")
    User.objects.create_superuser("olivia", "olivia@example.com", PASSWORD)
    return refund


def _screenshot(page, name: str) -> None:
    if folder := os.environ.get("SCREENSHOTS_DIR"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_an_operator_writes_a_policy_previews_it_and_reads_the_decisions(acme_world, page, live_server):
    admin = f"{live_server.url}/admin/"

    # Olivia signs in; the index tells the two kinds of group apart.
    page.goto(admin)
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(
        page.get_by_text("Who may use this admin, and what they may change. Not approvers.")
    ).to_be_visible()
    expect(page.get_by_text("Who is asked:")).to_be_visible()
    _screenshot(page, "admin-index.png")

    # She writes big-refunds with the row editors: two conditions, approvers, an escalation.
    page.goto(f"{admin}decisions/policy/add/")
    page.get_by_label("Organization").select_option(label="acme")
    page.get_by_label("Name").fill("big-refunds")
    page.get_by_label("Position").fill("2")
    conditions = page.locator("#id_conditions")
    conditions.locator('input[name="conditions-field"]').nth(0).fill("details.amount")
    conditions.locator('select[name="conditions-op"]').nth(0).select_option("gte")
    conditions.locator('input[name="conditions-value"]').nth(0).fill("500")
    conditions.get_by_role("button", name="Add a condition").click()
    conditions.locator('input[name="conditions-field"]').nth(1).fill("details.currency")
    conditions.locator('select[name="conditions-op"]').nth(1).select_option("in")
    conditions.locator('input[name="conditions-value"]').nth(1).fill("EUR, USD")
    page.get_by_label("Action").select_option("route")
    page.locator("#id_approvers").fill("group:finance")
    page.locator("#id_quorum").fill("all")
    page.get_by_label("Timeout minutes").fill("120")
    escalation = page.locator("#id_escalation")
    escalation.locator('input[name="escalation-after_minutes"]').fill("30")
    escalation.locator('textarea[name="escalation-approvers"]').fill(CAROL)
    page.locator('input[name="_save"]').click()
    expect(page.get_by_text("was added successfully")).to_be_visible()

    rule = Policy.objects.get(name="big-refunds")
    assert rule.conditions == [
        {"field": "details.amount", "op": "gte", "value": 500},
        {"field": "details.currency", "op": "in", "value": ["EUR", "USD"]},
    ]
    assert (rule.approvers, rule.quorum, rule.timeout_minutes) == (["group:finance"], "all", 120)
    assert rule.escalation == [{"after_minutes": 30, "approvers": [CAROL]}]

    # Her rule reads back as rows, as she typed it.
    page.goto(f"{admin}decisions/policy/{rule.pk}/change/")
    expect(page.locator('input[name="conditions-value"]').nth(1)).to_have_value("EUR, USD")
    expect(page.locator("#id_approvers")).to_have_value("group:finance")
    _screenshot(page, "admin-policy-form.png")

    # Which rule would match a €900 refund? big-refunds, after small-refunds did not.
    page.goto(f"{admin}decisions/policy/")
    page.get_by_role("link", name="Which rule would match?").click()
    page.get_by_label("Action").fill("Refund $900 to order #1042")
    page.get_by_label("Details").fill('{"amount": 900, "currency": "EUR"}')
    page.get_by_role("button", name="Show the matching rule").click()
    result = page.locator("#preview-result")
    expect(result.get_by_text("Rule “big-refunds” matches")).to_be_visible()
    expect(result.get_by_text("✗ details.amount is less than 50")).to_be_visible()
    expect(result.get_by_text("✓ details.currency is one of")).to_be_visible()
    expect(result.get_by_text(f"{ALICE} by email (group:finance)")).to_be_visible()
    expect(result.get_by_text("1 later rule not tried")).to_be_visible()
    _screenshot(page, "admin-preview.png")

    # The approved refund's page: readable fields, times with their zone.
    page.goto(f"{admin}decisions/decision/{acme_world.pk}/change/")
    expect(page.get_by_role("cell", name="Ada Lovelace").first).to_be_visible()
    expect(page.get_by_role("cell", name="Invoice checked.").first).to_be_visible()
    expect(page.locator(".field-created_at .readonly")).to_contain_text(" UTC")
    expect(page.get_by_role("link", name="refunds (route)")).to_be_visible()
    expect(page.get_by_text("group:finance (quorum: any)")).to_be_visible()
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    assert page.evaluate(WIDER_THAN_THE_WINDOW) is False, "the decision page scrolls sideways"
    _screenshot(page, "admin-decision.png")

    # The decision list, the navigation sidebar folded away (Django remembers it): every column
    # fits, and ids, statuses and times each stay on one line.
    page.goto(f"{admin}decisions/decision/")
    page.locator("#toggle-nav-sidebar").click()
    results = page.locator("#changelist .results")
    assert results.evaluate("box => box.scrollWidth <= box.clientWidth"), "the list scrolls sideways"
    expect(page.get_by_role("link", name=acme_world.pk)).to_be_visible()
    for column in [
        "th.field-id",
        "td.field-status",
        "td.field-urgency",
        "td.field-created",
        "td.field-resolved",
    ]:
        cells = page.locator(f"#result_list {column}")
        assert cells.count() == 3
        for index in range(3):
            assert cells.nth(index).evaluate(LINES) == 1, (column, cells.nth(index).inner_text())
    assert "UTC" in page.locator("#result_list td.field-created").first.inner_text()
    # and the action, which may wrap, has room: no word on a line of its own
    assert page.locator("#result_list td.field-action").last.evaluate(LINES) <= 2
    _screenshot(page, "admin-decisions.png")
