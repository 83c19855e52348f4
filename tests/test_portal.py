"""The approver portal at /inbox, through Django's test client on PostgreSQL.

Acme and Globex both ask alice for sign-off; Acme also asks bob alone. alice signs in by the
link emailed to her, sees what waits for her in both organizations (never bob's), answers one,
and approves several at once with one note. Each answer is recorded via web and audited.
"""

import subprocess
from datetime import UTC, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from decisions.models import ApprovalRequest, Status, Via
from decisions.services import MAX_NOTE_LENGTH, decision_answer, decision_cancel
from portal.models import SignInLink
from tests.conftest import ALICE, BOB
from tests.helpers import django_process
from tests.portal_helpers import ask, sign_in_token, signed_in, signed_in_alice_fixture, tasks_run_here  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("tasks_run_here")]


# --- signing in ---------------------------------------------------------------------------


def test_inbox_asks_for_an_address_when_signed_out(client):
    response = client.get("/inbox")
    assert response.status_code == 200
    assert b'<label for="address">Email address</label>' in response.content
    assert response["Cache-Control"] == "no-store"


def test_the_emailed_link_signs_in_only_by_its_post(client, mailoutbox, acme_key):
    ask(acme_key, approvers=[ALICE], action="Refund order #1042")
    response = client.post("/inbox/sign-in", {"address": "  Alice@Example.com "})
    assert response.status_code == 200
    assert b"Check your email" in response.content
    token = sign_in_token(mailoutbox, ALICE)

    # A mail scanner's GET shows the button and signs nobody in.
    page = client.get(f"/inbox/sign-in/{token}")
    assert page.status_code == 200
    assert b">Sign in</button>" in page.content
    assert page["Referrer-Policy"] == "same-origin"  # the link never leaks to another site
    assert b"Email address" in client.get("/inbox").content
    assert SignInLink.objects.get().used_at is None

    # The button's POST signs alice in, with a cookie the page's script cannot read.
    response = client.post(f"/inbox/sign-in/{token}")
    assert response.status_code == 302
    assert response["Location"] == "/inbox"
    cookie = response.cookies["sessionid"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["max-age"] == 14 * 24 * 3600
    inbox = client.get("/inbox")
    assert b"Signed in as alice@example.com" in inbox.content
    assert b"Refund order #1042" in inbox.content


def test_a_sign_in_link_works_once(client, mailoutbox, acme_key):
    ask(acme_key, approvers=[ALICE], action="Refund")
    client.post("/inbox/sign-in", {"address": ALICE})
    token = sign_in_token(mailoutbox, ALICE)
    assert client.post(f"/inbox/sign-in/{token}").status_code == 302

    other = Client()
    again = other.post(f"/inbox/sign-in/{token}")
    assert again.status_code == 404
    assert b"This sign-in link is not valid" in again.content
    assert other.get(f"/inbox/sign-in/{token}").status_code == 404


def test_a_sign_in_link_expires_after_15_minutes(client, mailoutbox, acme_key):
    ask(acme_key, approvers=[ALICE], action="Refund")
    client.post("/inbox/sign-in", {"address": ALICE})
    token = sign_in_token(mailoutbox, ALICE)
    link = SignInLink.objects.get()
    assert link.expires_at - link.created_at == timedelta(minutes=15)
    SignInLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.post(f"/inbox/sign-in/{token}").status_code == 404
    assert b"Email address" in client.get("/inbox").content


def test_a_forged_link_is_not_found(client):
    response = client.post("/inbox/sign-in/not-a-real-token")
    assert response.status_code == 404
    assert b"Ask for a new one" in response.content


def test_an_unknown_address_gets_the_same_page_and_no_email(client, mailoutbox, acme_key):
    ask(acme_key, approvers=[ALICE], action="Refund")
    known = client.post("/inbox/sign-in", {"address": ALICE})
    unknown = client.post("/inbox/sign-in", {"address": "mallory@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert known.content.replace(ALICE.encode(), b"X") == unknown.content.replace(
        b"mallory@example.com", b"X"
    )
    assert [m.to for m in mailoutbox] == [[ALICE]]
    assert not SignInLink.objects.filter(address="mallory@example.com").exists()


@pytest.mark.parametrize("address", ["", "alice", "alice@", "a" * 320 + "@example.com", "al ice@example.com"])
def test_a_bad_address_is_a_clear_400(client, mailoutbox, address):
    response = client.post("/inbox/sign-in", {"address": address})
    assert response.status_code == 400
    assert b"Enter your email address, such as alice@example.com." in response.content
    assert b'aria-invalid="true"' in response.content
    assert mailoutbox == []


@pytest.mark.parametrize("address", [ALICE, "mallory@example.com"])
def test_sign_in_requests_are_rate_limited_per_address_known_or_not(client, mailoutbox, acme_key, address):
    ask(acme_key, approvers=[ALICE], action="Refund")
    for _ in range(5):
        assert client.post("/inbox/sign-in", {"address": address}).status_code == 200
    limited = client.post("/inbox/sign-in", {"address": address})
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) > 0
    assert b"Too many sign-in requests" in limited.content
    # Another address from the same client is still served.
    assert client.post("/inbox/sign-in", {"address": BOB}).status_code == 200


def test_sign_in_requests_are_rate_limited_per_ip(client, settings):
    settings.PORTAL_SIGN_IN_IP_RATE_LIMIT = "3/hour"
    for n in range(3):
        assert client.post("/inbox/sign-in", {"address": f"user{n}@example.com"}).status_code == 200
    assert client.post("/inbox/sign-in", {"address": "user9@example.com"}).status_code == 429


def test_sign_out_everywhere_ends_every_session(mailoutbox, acme_key):
    ask(acme_key, approvers=[ALICE], action="Refund")
    phone, laptop = signed_in(Client(), mailoutbox, ALICE), signed_in(Client(), mailoutbox, ALICE)
    assert b"Signed in as" in phone.get("/inbox").content

    assert laptop.post("/inbox/sign-out-everywhere").status_code == 302

    assert b"Email address" in phone.get("/inbox").content
    assert b"Email address" in laptop.get("/inbox").content


def test_sign_out_ends_this_session_only(mailoutbox, acme_key):
    ask(acme_key, approvers=[ALICE], action="Refund")
    phone, laptop = signed_in(Client(), mailoutbox, ALICE), signed_in(Client(), mailoutbox, ALICE)
    laptop.post("/inbox/sign-out")
    assert b"Email address" in laptop.get("/inbox").content
    assert b"Signed in as" in phone.get("/inbox").content


# --- the inbox ----------------------------------------------------------------------------


def test_the_inbox_lists_my_pending_decisions_across_organizations_most_urgent_first(
    alice, acme_key, globex_key
):
    soon = ask(acme_key, approvers=[ALICE], action="Normal, due soon", timeout_minutes=10)
    later = ask(acme_key, approvers=[ALICE], action="Normal, due later", timeout_minutes=120)
    critical = ask(
        globex_key, approvers=[ALICE], action="Critical, due last", urgency="critical", timeout_minutes=600
    )
    ask(acme_key, approvers=[BOB], action="Only bob is asked")
    answered = ask(acme_key, approvers=[ALICE], action="Already cancelled")
    decision_cancel(decision=answered, actor="api_key:x")

    page = alice.get("/inbox").content.decode()
    order = [page.index(d.action) for d in (critical, soon, later)]
    assert order == sorted(order)
    assert "Globex" in page
    assert "Acme Corp" in page
    assert "asked by acme agent" in page
    assert "asked by globex agent" in page
    assert "Only bob is asked" not in page
    assert "Already cancelled" not in page
    # Each deadline in UTC for the page's script to show in the viewer's own time zone.
    assert f'<time datetime="{soon.expires_at.astimezone(UTC).isoformat()}" data-local>' in page


def test_search_narrows_the_inbox(alice, acme_key, globex_key):
    ask(acme_key, approvers=[ALICE], action="Refund order #1042")
    ask(globex_key, approvers=[ALICE], action="Deploy v1.2")
    page = alice.get("/inbox", {"q": "refund"}).content.decode()
    assert "Refund order #1042" in page
    assert "Deploy v1.2" not in page
    page = alice.get("/inbox", {"q": "globex"}).content.decode()
    assert "Deploy v1.2" in page
    assert "Refund order #1042" not in page
    assert "No pending decision matches" in alice.get("/inbox", {"q": "x" * 1000}).content.decode()


def test_a_decision_page_shows_details_and_answers_via_web(alice, acme_key):
    decision = ask(
        acme_key, approvers=[ALICE], action="Refund $120", context="Charged twice.", details={"amount": 120}
    )
    page = alice.get(f"/inbox/{decision.id}").content.decode()
    assert "Charged twice." in page
    assert "amount" in page
    assert "120" in page
    assert 'name="choice" value="approve"' in page

    response = alice.post(f"/inbox/{decision.id}/answer", {"choice": "approve", "note": "Fine by me"})
    assert response.status_code == 302
    decision.refresh_from_db()
    assert decision.status == Status.APPROVED
    assert decision.outcome["via"] == Via.WEB == "web"
    assert decision.outcome["by"] == ALICE
    assert decision.outcome["note"] == "Fine by me"
    event = AuditEvent.objects.get(decision=decision, event="decision.answered")
    assert (event.actor, event.channel) == (ALICE, "web")
    assert "Approve: Refund $120" in alice.get("/inbox").content.decode()


def test_a_bad_answer_is_a_clear_400_and_changes_nothing(alice, acme_key):
    decision = ask(acme_key, approvers=[ALICE], action="Refund")
    response = alice.post(f"/inbox/{decision.id}/answer", {"choice": "maybe"})
    assert response.status_code == 400
    assert "&#x27;maybe&#x27; is not one of the options." in response.content.decode()
    response = alice.post(
        f"/inbox/{decision.id}/answer", {"choice": "deny", "note": "x" * (MAX_NOTE_LENGTH + 1)}
    )
    assert response.status_code == 400
    assert b"The note is too long." in response.content
    decision.refresh_from_db()
    assert decision.status == Status.PENDING


def test_answering_twice_is_a_409(alice, acme_key):
    both = ask(acme_key, approvers=[ALICE, BOB], action="Refund", quorum="all")
    assert alice.post(f"/inbox/{both.id}/answer", {"choice": "approve"}).status_code == 302
    # Still pending (bob has not answered), but no longer waiting for alice.
    again = alice.post(f"/inbox/{both.id}/answer", {"choice": "approve"})
    assert again.status_code == 409
    assert f"You have already answered decision {both.id}.".encode() in again.content

    settled = ask(acme_key, approvers=[ALICE], action="Refund")
    decision_cancel(decision=settled, actor="api_key:x")
    late = alice.post(f"/inbox/{settled.id}/answer", {"choice": "approve"})
    assert late.status_code == 409
    assert f"Decision {settled.id} is already cancelled.".encode() in late.content


def test_another_approvers_or_organizations_decision_is_not_found(alice, acme_key, globex_key):
    bobs = ask(acme_key, approvers=[BOB], action="Bob's refund")
    globex_bob = ask(globex_key, approvers=[BOB], action="Globex asks bob")
    for decision in (bobs, globex_bob):
        page = alice.get(f"/inbox/{decision.id}")
        assert page.status_code == 404
        assert decision.action.encode() not in page.content
        answer = alice.post(f"/inbox/{decision.id}/answer", {"choice": "approve"})
        assert answer.status_code == 404
        decision.refresh_from_db()
        assert decision.status == Status.PENDING
    assert alice.get("/inbox/dec_doesnotexist").status_code == 404


def test_signed_out_answers_are_refused(client, acme_key):
    decision = ask(acme_key, approvers=[ALICE], action="Refund")
    response = client.post(f"/inbox/{decision.id}/answer", {"choice": "approve"})
    assert response.status_code == 403
    assert client.post("/inbox/bulk", {"decision": [decision.id], "choice": "approve"}).status_code == 403
    assert client.get("/inbox/history").status_code == 302
    decision.refresh_from_db()
    assert decision.status == Status.PENDING


# --- several at once -----------------------------------------------------------------------


def test_bulk_approve_answers_each_with_one_note(alice, acme_key, globex_key):
    first = ask(acme_key, approvers=[ALICE], action="Refund A")
    second = ask(globex_key, approvers=[ALICE], action="Refund B")
    settled = ask(acme_key, approvers=[ALICE], action="Refund C")
    decision_cancel(decision=settled, actor="api_key:x")
    bobs = ask(acme_key, approvers=[BOB], action="Bob's own")

    response = alice.post(
        "/inbox/bulk",
        {
            "decision": [first.id, second.id, settled.id, bobs.id, first.id],
            "choice": "approve",
            "note": "Batch OK",
        },
        follow=True,
    )
    page = response.content.decode()
    assert "Approved 2 decisions." in page
    assert f"{settled.id}: Decision {settled.id} is already cancelled." in page
    assert f"{bobs.id}: No decision {bobs.id} waits for your answer." in page
    for decision in (first, second):
        decision.refresh_from_db()
        assert decision.status == Status.APPROVED
        assert (decision.outcome["via"], decision.outcome["note"], decision.outcome["by"]) == (
            "web",
            "Batch OK",
            ALICE,
        )
        assert (
            AuditEvent.objects.filter(decision=decision, event="decision.answered", channel="web").count()
            == 1
        )
    bobs.refresh_from_db()
    assert bobs.status == Status.PENDING


def test_bulk_deny(alice, acme_key):
    decisions = [ask(acme_key, approvers=[ALICE], action=f"Refund {n}") for n in range(3)]
    alice.post("/inbox/bulk", {"decision": [d.id for d in decisions], "choice": "deny", "note": "No"})
    for decision in decisions:
        decision.refresh_from_db()
        assert (decision.status, decision.outcome["note"]) == (Status.DENIED, "No")


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"choice": "approve"}, "Select at least one decision."),
        ({"choice": "maybe", "decision": ["DEC"]}, "Choose approve or deny."),
        ({"decision": ["DEC"]}, "Choose approve or deny."),
        (
            {"choice": "approve", "decision": ["DEC"], "note": "x" * (MAX_NOTE_LENGTH + 1)},
            "The note is too long.",
        ),
        (
            {"choice": "approve", "decision": [f"dec_{n}" for n in range(101)]},
            "Select at most 100 decisions at once.",
        ),
    ],
)
def test_bulk_bad_input_is_a_clear_400_and_answers_nothing(alice, acme_key, form, message):
    decision = ask(acme_key, approvers=[ALICE], action="Refund")
    form = {**form, "decision": [decision.id if d == "DEC" else d for d in form.get("decision", [])]}
    response = alice.post("/inbox/bulk", form)
    assert response.status_code == 400
    assert message in response.content.decode()
    decision.refresh_from_db()
    assert decision.status == Status.PENDING


# --- history -------------------------------------------------------------------------------


def test_history_lists_what_i_answered_newest_first(alice, acme_key):
    first = ask(acme_key, approvers=[ALICE], action="First answered")
    second = ask(acme_key, approvers=[ALICE], action="Second answered")
    waiting = ask(acme_key, approvers=[ALICE], action="Still waiting")
    bobs = ask(acme_key, approvers=[BOB, ALICE], action="Bob answered")
    # (Following the redirects shows, and so clears, the "Approve: …" notices.)
    alice.post(f"/inbox/{first.id}/answer", {"choice": "deny", "note": "too much"}, follow=True)
    alice.post(f"/inbox/{second.id}/answer", {"choice": "approve"}, follow=True)

    decision_answer(
        request_id=ApprovalRequest.objects.get(decision=bobs, address=BOB).pk, choice="approve", via="email"
    )

    page = alice.get("/inbox/history").content.decode()
    assert page.index("Second answered") < page.index("First answered")
    assert "too much" in page
    assert "via web" in page
    assert "Still waiting" not in page
    assert "Bob answered" not in page
    assert waiting.action in alice.get("/inbox").content.decode()
    assert "Second answered" not in alice.get("/inbox/history", {"q": "first"}).content.decode()
    # Bob's own decision, which alice never answered, shows her nothing of his answer.
    page = alice.get(f"/inbox/{bobs.id}").content.decode()
    assert BOB not in page
    assert "This decision is approved" in page


# --- settings ------------------------------------------------------------------------------


def _settings_of(**environment) -> subprocess.CompletedProcess:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_AGE)"
    )
    return django_process(code, **environment)


def test_the_session_cookie_is_secure_behind_https():
    served = _settings_of(PUBLIC_BASE_URL="https://approvals.example.com")
    assert served.stdout.split() == ["True", "True", str(14 * 24 * 3600)]
    assert _settings_of(PUBLIC_BASE_URL="http://127.0.0.1:8000").stdout.split()[:2] == ["False", "False"]


def test_a_bad_sign_in_rate_limit_stops_start_up():
    result = _settings_of(PORTAL_SIGN_IN_RATE_LIMIT="lots")
    assert result.returncode != 0
    assert "PORTAL_SIGN_IN_RATE_LIMIT" in result.stderr


def test_the_cookie_carries_secure_when_set(client, mailoutbox, acme_key, settings):
    settings.SESSION_COOKIE_SECURE = True
    ask(acme_key, approvers=[ALICE], action="Refund")
    client.post("/inbox/sign-in", {"address": ALICE})
    response = client.post(f"/inbox/sign-in/{sign_in_token(mailoutbox, ALICE)}", secure=True)
    assert response.cookies["sessionid"]["secure"] is True
