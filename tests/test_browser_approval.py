"""End to end in a real headless Chromium: alice opens the approval email, clicks a button,
confirms on the page it opens, and the decision is answered via email.

Acme's agent asks alice to sign off a refund. The email is sent by the outbox's own attempt
(to Django's locmem mailbox), its HTML part opened from a file as a mail client would show
it, and its links followed to pytest-django's live server.

Needs Debian's `chromium` (/usr/bin/chromium): skipped where it is missing, failed in CI.
Playwright never downloads a browser here; it drives the system one.

Set SCREENSHOTS_DIR to save the pictures the README shows (email, confirm page, thank-you page).
"""

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from decisions.models import ApprovalRequest, Decision, Status, Via
from decisions.services import DecisionSpec, decision_create
from notifications.models import Delivery
from notifications.services import delivery_attempt
from tests.browser import PHONE
from tests.conftest import ALICE

ACTION = "Refund $120 to order #1042"
DETAILS = {"amount": 120, "customer": "Ada"}


@pytest.fixture
def page(browser):
    # A fresh context per test: no cookies or history carried from one test to the next.
    context = browser.new_context(viewport=PHONE)
    context.set_default_timeout(15_000)  # bounds a failing test; a passing one never waits it out
    yield context.new_page()
    context.close()


@pytest.fixture
def emailed_to_alice(live_server, settings, mailoutbox, acme_key, tmp_path) -> tuple[Decision, Path]:
    """Given Acme's agent asked alice, and her email went out: the decision and the email's
    HTML saved to a file."""
    # Before the email is rendered: its links must lead to the live server.
    settings.PUBLIC_BASE_URL = live_server.url
    decision, created = decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(action=ACTION, details=DETAILS, stages=[{"approvers": [ALICE], "quorum": "any"}]),
    )
    assert created
    delivery = Delivery.objects.get(decision=decision, kind=Delivery.Kind.EMAIL, request__address=ALICE)
    delivery_attempt(delivery_id=delivery.pk)

    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == [ALICE]
    html = next(content for content, mimetype in message.alternatives if mimetype == "text/html")
    email_file = tmp_path / "email.html"
    email_file.write_text(html, encoding="utf-8")
    return decision, email_file


def _screenshot(page, name: str) -> None:
    if folder := os.environ.get("SCREENSHOTS_DIR"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_alice_approves_from_the_email(emailed_to_alice, page, live_server):
    decision, email_file = emailed_to_alice

    # When alice opens the email and clicks Approve…
    page.goto(email_file.as_uri())
    expect(page.get_by_role("heading", name=ACTION)).to_be_visible()
    _screenshot(page, "email.png")
    page.get_by_role("link", name="Approve").click()

    # …she lands on the confirm page, which has decided nothing yet (mail scanners GET links too)…
    confirm = page.get_by_role("button", name="Confirm: Approve")
    expect(confirm).to_be_visible()
    assert page.url.startswith(f"{live_server.url}/a/")
    decision.refresh_from_db()
    assert decision.status == Status.PENDING

    # …and she adds a note and confirms.
    page.get_by_label("Note (optional)").fill("Customer is a regular; approved.")
    _screenshot(page, "confirm.png")
    confirm.click()

    # Then she is thanked, and the decision is approved by her, via email, with her note.
    expect(page.get_by_text("Thank you")).to_be_visible()
    expect(page.get_by_text("Note: Customer is a regular; approved.")).to_be_visible()
    _screenshot(page, "done.png")
    decision.refresh_from_db()
    assert decision.status == Status.APPROVED
    assert decision.outcome["choice"] == "approve"
    assert decision.outcome["via"] == Via.EMAIL
    assert decision.outcome["by"] == ALICE
    assert decision.outcome["note"] == "Customer is a regular; approved."
    assert decision.outcome["details"] == DETAILS
    request = ApprovalRequest.objects.get(decision=decision, address=ALICE)
    assert request.state == ApprovalRequest.State.ANSWERED
    assert request.answered_via == Via.EMAIL


def test_alice_denies_from_the_email(emailed_to_alice, page, live_server):
    decision, email_file = emailed_to_alice

    # When alice opens the email, clicks Deny, explains why and confirms…
    page.goto(email_file.as_uri())
    page.get_by_role("link", name="Deny").click()
    confirm = page.get_by_role("button", name="Confirm: Deny")
    expect(confirm).to_be_visible()
    assert page.url.startswith(f"{live_server.url}/a/")
    page.get_by_label("Note (optional)").fill("Order was never shipped back.")
    confirm.click()

    # Then she is thanked, and the decision is denied by her, via email, with her note.
    expect(page.get_by_text("Thank you")).to_be_visible()
    decision.refresh_from_db()
    assert decision.status == Status.DENIED
    assert decision.outcome["choice"] == "deny"
    assert decision.outcome["via"] == Via.EMAIL
    assert decision.outcome["by"] == ALICE
    assert decision.outcome["note"] == "Order was never shipped back."
