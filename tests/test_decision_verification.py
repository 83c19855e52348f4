"""A decision's `verification`: how sure Countersign must be of who answers. `link` (the
default) takes the email or Slack click; `session` needs the approver signed in to the portal
by a fresh magic link; `passkey` a passkey in the portal (tests/test_browser_passkeys.py).
The outcome records how the answer was `verified`.

Acme's agent asks alice; she answers by email link or in the portal.
"""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from channels.email.channel import approval_email
from channels.slack.messages import PORTAL_ACTION, approval_blocks
from decisions.links import link_url
from decisions.models import ApprovalRequest, Policy, Status, Verification
from decisions.services import VerificationRequired, decision_answer
from notifications.models import Delivery
from portal.sessions import SIGNED_IN_AT
from tests.conftest import ALICE
from tests.portal_helpers import ask, sign_in_token, signed_in_alice_fixture, tasks_run_here  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("tasks_run_here")]


def request_of(decision) -> ApprovalRequest:
    return ApprovalRequest.objects.get(decision=decision, address=ALICE)


# --- the API -------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["link", "session", "passkey"])
def test_post_decisions_takes_verification_and_shows_it(api, level):
    response = api.post(
        "/decisions", {"action": "Wire $9,000", "approver": ALICE, "verification": level}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["verification"] == level
    assert api.get(f"/decisions/{response.json()['id']}").json()["verification"] == level


def test_verification_defaults_to_link(api):
    response = api.post("/decisions", {"action": "Wire", "approver": ALICE}, format="json")
    assert response.json()["verification"] == "link"


@pytest.mark.parametrize("value", ["otp", "", None, 3, ["passkey"]])
def test_an_unknown_verification_is_a_clear_400(api, value):
    response = api.post(
        "/decisions", {"action": "Wire", "approver": ALICE, "verification": value}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error["fields"]) == ["verification"]


def test_a_policy_rule_can_ask_for_a_passkey(api, acme):
    Policy.objects.create(
        organization=acme,
        name="big-wires",
        action=Policy.Action.ROUTE,
        conditions=[{"field": "details.amount", "op": "gte", "value": 5000}],
        verification=Verification.PASSKEY,
    )
    big = api.post(
        "/decisions", {"action": "Wire", "approver": ALICE, "details": {"amount": 9000}}, format="json"
    ).json()
    small = api.post(
        "/decisions", {"action": "Wire", "approver": ALICE, "details": {"amount": 90}}, format="json"
    )
    assert big["verification"] == "passkey"
    assert small.json()["verification"] == "link"


# --- email and Slack -----------------------------------------------------------------------


def test_a_link_answer_records_verified_link(acme_key):
    decision = ask(acme_key, approvers=[ALICE], action="Refund")
    decision = decision_answer(request_id=request_of(decision).pk, choice="approve", via="email")
    assert decision.outcome["verified"] == "link"
    answered = AuditEvent.objects.get(decision=decision, event="decision.answered")
    assert '"verified":"link"' in answered.payload


def test_timeouts_and_cancels_record_no_verification(api):
    created = api.post("/decisions", {"action": "Wire", "approver": ALICE}, format="json").json()
    cancelled = api.post(f"/decisions/{created['id']}/cancel").json()
    assert cancelled["outcome"]["verified"] is None


@pytest.mark.parametrize("level", ["session", "passkey"])
def test_an_email_link_cannot_answer_a_decision_that_asks_for_more(acme_key, level):
    decision = ask(acme_key, approvers=[ALICE], action="Wire $9,000", verification=level)
    path = urlsplit(link_url(request_of(decision), "approve")).path

    page = Client().get(path)
    assert page.status_code == 403
    assert b"Answer this in Countersign" in page.content
    assert f'href="http://127.0.0.1:8000/inbox/{decision.id}"'.encode() in page.content
    assert Client().post(path, {"confirm": "yes"}).status_code == 403
    with pytest.raises(VerificationRequired):
        decision_answer(request_id=request_of(decision).pk, choice="approve", via="slack")
    decision.refresh_from_db()
    assert decision.status == Status.PENDING


def test_the_email_for_a_passkey_decision_leads_only_to_the_portal(acme_key):
    decision = ask(acme_key, approvers=[ALICE], action="Wire $9,000", verification="passkey")
    message = approval_email(Delivery.objects.get(decision=decision, request__address=ALICE))
    urls = re.findall(r"https?://\S+", message.body)
    assert urls == [f"http://127.0.0.1:8000/inbox/{decision.id}", "http://127.0.0.1:8000/inbox"]
    assert "/a/" not in message.alternatives[0][0]


def test_slack_buttons_on_a_passkey_decision_open_the_portal(acme_key):
    decision = ask(acme_key, approvers=["slack:U0ALICE"], action="Wire $9,000", verification="passkey")
    request = ApprovalRequest.objects.get(decision=decision)
    actions = next(block for block in approval_blocks(decision, request) if block["type"] == "actions")
    assert actions["elements"] == [
        {
            "type": "button",
            "action_id": PORTAL_ACTION,
            "text": {"type": "plain_text", "text": "Open in Countersign"},
            "url": f"http://127.0.0.1:8000/inbox/{decision.id}",
            "style": "primary",
        }
    ]


# --- the portal ----------------------------------------------------------------------------


def age_session(client: Client, minutes: int) -> None:
    session = client.session
    session[SIGNED_IN_AT] = (timezone.now() - timedelta(minutes=minutes)).isoformat()
    session.save()


def test_a_fresh_session_answers_a_session_decision(alice, acme_key):
    decision = ask(acme_key, approvers=[ALICE], action="Wire $9,000", verification="session")
    assert alice.post(f"/inbox/{decision.id}/answer", {"choice": "approve"}).status_code == 302
    decision.refresh_from_db()
    assert (decision.status, decision.outcome["verified"], decision.outcome["via"]) == (
        Status.APPROVED,
        "session",
        "web",
    )


def test_a_stale_session_must_sign_in_again_for_a_session_decision(alice, acme_key):
    decision = ask(acme_key, approvers=[ALICE], action="Wire $9,000", verification="session")
    age_session(alice, minutes=16)

    page = alice.get(f"/inbox/{decision.id}").content.decode()
    assert "Email me a fresh sign-in link" in page
    assert 'name="choice"' not in page
    response = alice.post(f"/inbox/{decision.id}/answer", {"choice": "approve"})
    assert response.status_code == 403
    assert (
        f"Decision {decision.id} must be answered in the portal, freshly signed in."
        in response.content.decode()
    )
    decision.refresh_from_db()
    assert decision.status == Status.PENDING

    # A link decision answered from the same stale session is verified as a link, no more.
    plain = ask(acme_key, approvers=[ALICE], action="Refund")
    alice.post(f"/inbox/{plain.id}/answer", {"choice": "approve"})
    plain.refresh_from_db()
    assert plain.outcome["verified"] == "link"


def test_bulk_leaves_decisions_that_ask_for_a_passkey(alice, acme_key):
    plain = ask(acme_key, approvers=[ALICE], action="Refund")
    strict = ask(acme_key, approvers=[ALICE], action="Wire $9,000", verification="passkey")
    page = alice.post("/inbox/bulk", {"decision": [plain.id, strict.id], "choice": "approve"}, follow=True)
    assert f"{strict.id}: Open it to answer: it asks for a stronger sign-in." in page.content.decode()
    plain.refresh_from_db()
    strict.refresh_from_db()
    assert (plain.status, plain.outcome["verified"]) == (Status.APPROVED, "session")
    assert strict.status == Status.PENDING


def test_a_fresh_link_asked_from_the_decision_page_leads_back_to_it(alice, mailoutbox, acme_key):
    decision = ask(acme_key, approvers=[ALICE], action="Wire $9,000", verification="session")
    age_session(alice, minutes=16)
    page = alice.get(f"/inbox/{decision.id}").content.decode()
    assert f'<input type="hidden" name="next" value="/inbox/{decision.id}">' in page

    alice.post("/inbox/sign-in", {"address": ALICE, "next": f"/inbox/{decision.id}"})
    response = alice.post(f"/inbox/sign-in/{sign_in_token(mailoutbox, ALICE)}")
    assert response["Location"] == f"/inbox/{decision.id}"
    assert alice.post(f"/inbox/{decision.id}/answer", {"choice": "approve"}).status_code == 302
    decision.refresh_from_db()
    assert decision.outcome["verified"] == "session"


@pytest.mark.parametrize(
    "next_path", ["https://evil.example/", "//evil.example", "/admin/", "/inbox/../admin"]
)
def test_a_sign_in_link_never_leads_off_the_portal(client, mailoutbox, acme_key, next_path):
    ask(acme_key, approvers=[ALICE], action="Refund")
    client.post("/inbox/sign-in", {"address": ALICE, "next": next_path})
    response = client.post(f"/inbox/sign-in/{sign_in_token(mailoutbox, ALICE)}")
    assert response["Location"] == "/inbox"
