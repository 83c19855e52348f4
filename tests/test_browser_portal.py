"""The approver portal in a real headless Chromium: alice asks for a sign-in link, follows it
from the email, finds what Acme and Globex wait on her for, answers one and approves two at
once with one note. Her times show in her own time zone; the pages read in light and dark.

Needs Debian's `chromium` (/usr/bin/chromium), as tests/test_browser_approval.py: skipped where
it is missing, failed in CI. SCREENSHOTS_DIR=docs/screenshots saves the README's pictures
(portal-*-{phone,desktop}-{light,dark}.png).
"""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from audit.models import AuditEvent
from decisions.models import Status, Via
from portal.models import Delegation, Passkey
from tests.browser import PHONE
from tests.conftest import ALICE, BOB
from tests.portal_helpers import ask, sign_in_token, tasks_run_here  # noqa: F401 (fixture)

DESKTOP = {"width": 1280, "height": 860}

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("tasks_run_here")]


@pytest.fixture
def portal(live_server, settings):
    # Before any email is rendered: its links must lead to the live server.
    settings.PUBLIC_BASE_URL = live_server.url
    return live_server.url


@pytest.fixture
def new_page(browser):
    contexts = []

    def make(*, viewport=PHONE, **options):
        context = browser.new_context(viewport=viewport, locale="en-US", **options)
        context.set_default_timeout(15_000)  # bounds a failing test; a passing one never waits it out
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def _screenshot(page, name: str) -> None:
    if folder := os.environ.get("SCREENSHOTS_DIR"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def sign_in(page, portal: str, mailoutbox, address: str = ALICE) -> None:
    """What alice does: ask for a link, open it from her email, press Sign in."""
    page.goto(f"{portal}/inbox")
    page.get_by_label("Email address").fill(address)
    page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    page.goto(f"{portal}/inbox/sign-in/{sign_in_token(mailoutbox, address)}")
    # The link's page has signed nobody in yet: mail scanners open links too.
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {address}")).to_be_visible()


@pytest.fixture
def asked(acme_key, globex_key):
    """Three decisions wait for alice (two organizations), one for bob alone."""
    return {
        "refund": ask(
            acme_key, approvers=[ALICE], action="Refund $120 to order #1042", details={"amount": 120}
        ),
        "deploy": ask(
            globex_key,
            approvers=[ALICE],
            action="Deploy v1.2 to prod",
            urgency="critical",
            timeout_minutes=90,
        ),
        "vendor": ask(acme_key, approvers=[ALICE], action="Pay vendor invoice #77", timeout_minutes=240),
        "bobs": ask(acme_key, approvers=[BOB], action="Bob's own decision"),
    }


def test_alice_signs_in_and_answers_one_decision(portal, new_page, mailoutbox, asked):
    page = new_page()
    sign_in(page, portal, mailoutbox)

    # Her inbox: both organizations, the critical one first, nothing of bob's.
    titles = page.locator("h2").all_inner_texts()
    assert titles == ["Deploy v1.2 to prod", "Refund $120 to order #1042", "Pay vendor invoice #77"]
    expect(page.get_by_text("Globex · asked by globex agent")).to_be_visible()
    expect(page.get_by_text("Bob's own decision")).to_have_count(0)

    # She opens the refund, adds a note and approves it.
    page.get_by_role("link", name="Refund $120 to order #1042").click()
    expect(page.get_by_role("heading", name="Refund $120 to order #1042")).to_be_visible()
    page.get_by_label("Note (optional)").fill("Regular customer.")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status").filter(has_text="Approve: Refund $120 to order #1042")).to_be_visible()

    refund = asked["refund"]
    refund.refresh_from_db()
    assert refund.status == Status.APPROVED
    assert (refund.outcome["via"], refund.outcome["by"], refund.outcome["note"]) == (
        Via.WEB,
        ALICE,
        "Regular customer.",
    )

    # The history tab shows what she answered.
    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", name="Refund $120 to order #1042")).to_be_visible()
    expect(page.get_by_text("You answered approve via web")).to_be_visible()


def test_alice_approves_two_at_once_with_one_note(portal, new_page, mailoutbox, asked):
    page = new_page()
    sign_in(page, portal, mailoutbox)
    page.get_by_label("Select: Deploy v1.2 to prod").check()
    page.get_by_label("Select: Pay vendor invoice #77").check()
    page.get_by_label("Note for the selected decisions (optional)").fill("Both expected this week.")
    page.get_by_role("button", name="Approve selected").click()

    expect(page.get_by_text("Approved 2 decisions.")).to_be_visible()
    expect(page.locator("h2")).to_have_text(["Refund $120 to order #1042"])
    for name in ("deploy", "vendor"):
        decision = asked[name]
        decision.refresh_from_db()
        assert decision.status == Status.APPROVED
        assert (decision.outcome["via"], decision.outcome["note"]) == (Via.WEB, "Both expected this week.")
        assert (
            AuditEvent.objects.filter(decision=decision, event="decision.answered", channel="web").count()
            == 1
        )
    asked["refund"].refresh_from_db()
    assert asked["refund"].status == Status.PENDING


def test_search_finds_one_decision(portal, new_page, mailoutbox, asked):
    page = new_page()
    sign_in(page, portal, mailoutbox)
    page.get_by_label("Search pending decisions").fill("vendor")
    page.get_by_label("Search pending decisions").press("Enter")
    expect(page.locator("h2")).to_have_text(["Pay vendor invoice #77"])


def test_times_show_in_the_viewers_time_zone(portal, new_page, mailoutbox, asked):
    page = new_page(timezone_id="Asia/Tokyo")
    sign_in(page, portal, mailoutbox)
    page.get_by_role("link", name="Refund $120 to order #1042").click()

    due = asked["refund"].expires_at.astimezone(ZoneInfo("Asia/Tokyo"))
    hour = due.hour % 12 or 12
    expected = f"{hour}:{due:%M} {'AM' if due.hour < 12 else 'PM'}"
    due_time = page.locator("time").nth(1)
    expect(due_time).to_contain_text(expected)
    assert due_time.get_attribute("datetime") == asked["refund"].expires_at.astimezone(UTC).isoformat()
    expect(page.get_by_text("Times are shown in your time zone (Asia/Tokyo).")).to_be_visible()


def test_the_pages_read_on_phone_and_desktop_in_light_and_dark(portal, new_page, mailoutbox, asked):
    page = new_page()
    sign_in(page, portal, mailoutbox)
    signed_in = page.context.storage_state()
    backgrounds = {}
    for device, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        for scheme in ("light", "dark"):
            page = new_page(viewport=viewport, color_scheme=scheme, storage_state=signed_in)
            page.goto(f"{portal}/inbox")
            expect(page.get_by_role("button", name="Approve selected")).to_be_visible()
            backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
            # Keyboard users see where they are: the first checkbox gets a visible outline.
            page.get_by_label("Select: Deploy v1.2 to prod").focus()
            page.keyboard.press("Shift+Tab")
            page.keyboard.press("Tab")
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline == "solid"
            page.locator("body").click(position={"x": 1, "y": 1})  # no focus ring in the picture
            _screenshot(page, f"portal-inbox-{device}-{scheme}.png")
            page.get_by_role("link", name="Refund $120 to order #1042").click()
            expect(page.get_by_role("button", name="Approve")).to_be_visible()
            _screenshot(page, f"portal-decision-{device}-{scheme}.png")
    assert backgrounds == {"light": "rgb(243, 244, 246)", "dark": "rgb(11, 17, 32)"}


# --- passkeys ------------------------------------------------------------------------------


def virtual_authenticator(page, *, user_verified: bool = True) -> tuple:
    """Chrome's virtual authenticator (DevTools' WebAuthn domain): a platform authenticator
    that keeps resident keys and verifies its user, with no person to touch it."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": user_verified,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def add_passkey(page, portal: str, name: str) -> None:
    page.goto(f"{portal}/inbox/passkeys")
    page.get_by_label("Passkey name").fill(name)
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_role("rowheader", name=name)).to_be_visible()


def test_alice_registers_a_passkey_and_answers_with_it(portal, new_page, mailoutbox, acme_key):
    wire = ask(acme_key, approvers=[ALICE], action="Wire $9,000 to Initech", verification="passkey")
    page = new_page(viewport=DESKTOP)
    cdp, authenticator = virtual_authenticator(page)
    sign_in(page, portal, mailoutbox)

    add_passkey(page, portal, "Work laptop")
    expect(page.get_by_text("Passkey added: Work laptop")).to_be_visible()
    _screenshot(page, "portal-passkeys-desktop-light.png")
    passkey = Passkey.objects.get(approver__address=ALICE)
    assert passkey.name == "Work laptop"
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(credentials) == 1

    page.goto(f"{portal}/inbox/{wire.id}")
    expect(page.get_by_text("This decision asks for your passkey when you answer.")).to_be_visible()
    page.get_by_label("Note (optional)").fill("Checked with finance.")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status").filter(has_text="Approve: Wire $9,000 to Initech")).to_be_visible()

    wire.refresh_from_db()
    assert wire.status == Status.APPROVED
    assert (wire.outcome["verified"], wire.outcome["via"], wire.outcome["by"]) == ("passkey", Via.WEB, ALICE)
    assert wire.outcome["note"] == "Checked with finance."
    passkey.refresh_from_db()
    assert passkey.last_used_at is not None


def test_a_passkey_that_cannot_verify_the_user_answers_nothing(portal, new_page, mailoutbox, acme_key):
    wire = ask(acme_key, approvers=[ALICE], action="Wire $9,000 to Initech", verification="passkey")
    page = new_page()
    cdp, authenticator = virtual_authenticator(page)
    sign_in(page, portal, mailoutbox)
    add_passkey(page, portal, "Phone")

    # The authenticator now says its user was not verified (no PIN, no fingerprint).
    cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator, "isUserVerified": False})
    page.goto(f"{portal}/inbox/{wire.id}")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_contain_text("The passkey did not answer")
    wire.refresh_from_db()
    assert wire.status == Status.PENDING


def test_without_a_passkey_the_page_says_to_add_one(portal, new_page, mailoutbox, acme_key):
    wire = ask(acme_key, approvers=[ALICE], action="Wire $9,000 to Initech", verification="passkey")
    page = new_page()
    virtual_authenticator(page)
    sign_in(page, portal, mailoutbox)
    page.goto(f"{portal}/inbox/{wire.id}")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_contain_text("Register a passkey first")
    wire.refresh_from_db()
    assert wire.status == Status.PENDING


# --- delegation ----------------------------------------------------------------------------


def test_alice_delegates_to_bob_while_away(portal, new_page, mailoutbox, acme_key):
    ask(acme_key, approvers=[ALICE], action="Before she left")
    page = new_page(timezone_id="Europe/Paris")
    sign_in(page, portal, mailoutbox)
    page.get_by_role("link", name="Away").click()
    back = datetime.now(ZoneInfo("Europe/Paris")).replace(second=0, microsecond=0) + timedelta(days=3)
    page.get_by_label("Away until").fill(back.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Delegate to (email address)").fill(BOB)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="new requests go to bob@example.com")).to_be_visible()
    _screenshot(page, "portal-away-phone-light.png")
    # Typed in Paris time, kept as the same instant.
    assert Delegation.objects.get(address=ALICE).until == back

    # Acme asks alice; bob, signed in on his own phone, finds it on her behalf and approves it.
    refund = ask(acme_key, approvers=[ALICE], action="Refund $120 while alice is away")
    bob = new_page()
    sign_in(bob, portal, mailoutbox, BOB)
    expect(bob.get_by_text(f"on behalf of {ALICE}")).to_be_visible()
    bob.get_by_role("link", name="Refund $120 while alice is away").click()
    bob.get_by_role("button", name="Approve").click()
    expect(
        bob.get_by_role("status").filter(has_text="Approve: Refund $120 while alice is away")
    ).to_be_visible()
    refund.refresh_from_db()
    assert (refund.status, refund.outcome["by"]) == (Status.APPROVED, BOB)

    # Back early: the next ask is hers again.
    page.get_by_role("button", name="I'm back").click()
    expect(page.get_by_text("Welcome back")).to_be_visible()
    assert not Delegation.objects.exists()
