"""One-click links, /a/<token>: signed, bound to one approval request and one choice, honoured
only while that approver may still answer.

Acme's agent asks alice (and bob, sometimes carol) to sign off a refund. Their links come out
of the email the outbox sends. Whatever is wrong with a link, the approver gets an HTML page
(never JSON, never a 500), and nothing changes.
"""

import base64
import json
import re
from datetime import UTC, timedelta
from urllib.parse import urlencode, urlsplit

import factory
import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from decisions import links
from decisions.links import link_token
from decisions.models import ApprovalRequest, Decision
from decisions.services import decision_cancel
from notifications.models import Delivery
from notifications.services import delivery_attempt
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import DecisionFactory

ACTION = "Refund order #1042 for €1,200"
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"


# --- helpers ------------------------------------------------------------------------------


class Refund(DecisionFactory):
    """What these tests ask: alice and bob, either may approve."""

    action = ACTION
    details = factory.Dict({"amount": 1200, "currency": "EUR"})

    class Params:
        approvers = (ALICE, BOB)


def emailed_links(decision: Decision, address: str, mailoutbox) -> dict[str, str]:
    """Send the approver's email through the outbox; the paths of its links, by button label."""
    delivery = Delivery.objects.get(decision=decision, request__address=address)
    delivery_attempt(delivery_id=delivery.pk)
    message = next(m for m in reversed(mailoutbox) if m.to == [address])
    pairs = re.findall(r"^(\S[^\n:]*): (https?://\S+)$", message.body, flags=re.MULTILINE)
    assert pairs, message.body
    return {label: urlsplit(url).path for label, url in pairs}


def browser() -> Client:
    return Client(HTTP_USER_AGENT=BROWSER)


def confirm(path: str, **fields):
    """Press the confirm button on the page: a form POST, as a browser sends it."""
    body = urlencode({"confirm": "yes", **fields})
    return browser().post(path, body, content_type="application/x-www-form-urlencoded")


def text_of(response) -> str:
    """The page as a reader sees it: tags dropped, entities of the kind we check undone."""
    html = response.content.decode()
    text = re.sub(r"<[^>]+>", " ", html)
    text = text.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")
    return " ".join(text.split())


def assert_html_page(response, status: int) -> None:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("text/html")
    assert response.content.lstrip().lower().startswith(b"<!doctype html>")


def snapshot(decision: Decision) -> tuple:
    """Everything an answer could change, to compare before and after."""
    decision = Decision.objects.get(pk=decision.pk)
    requests = list(
        decision.requests.order_by("pk").values_list(
            "address", "state", "answered_at", "choice", "text", "note", "edited_details"
        )
    )
    return decision.status, decision.outcome, decision.resolved_at, decision.details, requests


def events(decision: Decision, event: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(decision=decision, event=event).order_by("pk"))


def when(moment) -> str:
    """How the pages write a moment: '3 Jun 2025, 13:35 UTC'."""
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"


def request_of(decision: Decision, address: str) -> ApprovalRequest:
    return decision.requests.get(address=address)


# --- tokens we did not make -----------------------------------------------------------------


def _flip_signature(token: str, other: str) -> str:
    head, signature = token.rsplit(":", 1)
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return f"{head}:{signature[:middle]}{swapped}{signature[middle + 1 :]}"


def _payload_says_deny(token: str, other: str) -> str:
    # Rewrite the readable claim (it is only base64 JSON) to choose deny; keep the signature.
    payload, rest = token.split(":", 1)
    claim = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claim["c"] = "deny"
    forged = base64.urlsafe_b64encode(json.dumps(claim, separators=(",", ":")).encode()).decode()
    return f"{forged.rstrip('=')}:{rest}"


def _splice(token: str, other: str) -> str:
    # The claim of the other decision's link under the signature of this one.
    return f"{other.split(':', 1)[0]}:{token.split(':', 1)[1]}"


def _claim(token: str) -> dict:
    return signing.loads(token, salt=links._SALT)


def _signed_with_another_key(token: str, other: str) -> str:
    return signing.dumps(_claim(token), key="not-the-servers-secret-key", salt=links._SALT, compress=True)


def _signed_with_another_salt(token: str, other: str) -> str:
    # Our key, another purpose: something else the server signed must not open this door.
    return signing.dumps(_claim(token), salt="countersign.something-else", compress=True)


FORGED = {
    "signature changed": _flip_signature,
    "claim edited": _payload_says_deny,
    "claim of another decision, signature of this one": _splice,
    "signed with another key": _signed_with_another_key,
    "signed with another salt": _signed_with_another_salt,
    "last character cut": lambda token, other: token[:-1],
    "cut in half": lambda token, other: token[: len(token) // 2],
    "signature dropped": lambda token, other: token.rsplit(":", 1)[0],
    "NUL byte": lambda token, other: "%00",
    "NUL inside": lambda token, other: token[:10] + "%00" + token[10:],
    "5000 characters": lambda token, other: "A" * 5000,
    "colons only": lambda token, other: ":::",
    "not base64": lambda token, other: "!!!:%E2%80%AE:***",
    "percent garbage": lambda token, other: "%ZZ%ff%fe",
}


@pytest.mark.parametrize("forge", FORGED.values(), ids=FORGED.keys())
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_token_we_did_not_make_gets_a_404_page_and_changes_nothing(acme_key, mailoutbox, forge, method):
    # given: alice's real approve link, and a link for another decision to splice from
    decision = Refund(api_key=acme_key[0])
    other = Refund(api_key=acme_key[0], action="Refund order #2077")
    token = emailed_links(decision, ALICE, mailoutbox)["Approve"].removeprefix("/a/")
    other_token = emailed_links(other, ALICE, mailoutbox)["Approve"].removeprefix("/a/")
    before = snapshot(decision), snapshot(other)
    events_before = AuditEvent.objects.count()

    # when
    path = f"/a/{forge(token, other_token)}"
    response = browser().get(path) if method == "GET" else confirm(path, note="forged")

    # then
    assert_html_page(response, 404)
    assert "This link is not valid" in text_of(response)
    assert (snapshot(decision), snapshot(other)) == before
    # Not even a link.viewed: the trail records visits to links we made, not noise.
    assert AuditEvent.objects.count() == events_before


@pytest.mark.parametrize("path", ["/a/", "/a/abc/def", "/a/%2F..%2F..%2Fadmin"])
def test_a_path_that_is_not_a_token_at_all_is_a_404_page_too(db, path):
    response = browser().get(path)

    # The approver came from an email, in a browser: a page, not the API's JSON.
    assert_html_page(response, 404)
    assert "json" not in response["Content-Type"]


def test_a_signed_claim_naming_alices_request_under_another_decision_is_a_404(acme_key, mailoutbox):
    # WHY: even a token the server did sign (a bug elsewhere, a leaked key rotation) must not
    # let alice's request answer a decision it does not belong to.
    decision = Refund(api_key=acme_key[0])
    other = Refund(api_key=acme_key[0], action="Refund order #2077")
    alice = request_of(decision, ALICE)
    moved = signing.dumps({"r": alice.pk, "d": other.id, "c": "approve"}, salt=links._SALT, compress=True)
    before = snapshot(decision), snapshot(other)

    get = browser().get(f"/a/{moved}")
    post = confirm(f"/a/{moved}")

    assert_html_page(get, 404)
    assert_html_page(post, 404)
    assert (snapshot(decision), snapshot(other)) == before
    assert events(decision, "link.viewed") == events(other, "link.viewed") == []


def test_a_signed_claim_for_a_request_that_does_not_exist_is_a_404(acme_key):
    decision = Refund(api_key=acme_key[0])
    missing = signing.dumps({"r": 999_999, "d": decision.id, "c": "approve"}, salt=links._SALT, compress=True)

    assert_html_page(browser().get(f"/a/{missing}"), 404)
    assert_html_page(confirm(f"/a/{missing}"), 404)
    assert snapshot(decision)[0] == "pending"


@pytest.mark.parametrize(
    ("fields", "choice"),
    [
        ({}, "escalate to legal"),  # not among approve/deny
        ({}, "APPROVE"),  # choices are exact
        ({}, ""),  # the answer link of a text response, on a choice decision
        ({"response_type": "text"}, "approve"),  # a button, on a text decision
    ],
)
def test_a_signed_link_for_a_choice_the_decision_does_not_offer_is_a_404(acme_key, fields, choice):
    decision = Refund(api_key=acme_key[0], **fields)
    token = link_token(request_of(decision, ALICE), choice)
    before = snapshot(decision)

    assert_html_page(browser().get(f"/a/{token}"), 404)
    assert_html_page(confirm(f"/a/{token}", text="Ship from Rotterdam"), 404)
    assert snapshot(decision) == before


def test_a_link_whose_option_was_withdrawn_is_a_404(acme_key, mailoutbox):
    # given: alice got an "Escalate to legal" button, then the option was taken off the decision
    decision = Refund(api_key=acme_key[0], options=["approve", "deny", "escalate to legal"])
    escalate = emailed_links(decision, ALICE, mailoutbox)["Escalate to legal"]
    Decision.objects.filter(pk=decision.pk).update(options=["approve", "deny"])
    before = snapshot(decision)

    # when / then
    assert_html_page(browser().get(escalate), 404)
    assert_html_page(confirm(escalate), 404)
    assert snapshot(decision) == before


# --- links that worked once -----------------------------------------------------------------


def test_a_link_used_again_after_answering_shows_who_decided_what_and_when_and_changes_nothing(
    acme_key, mailoutbox
):
    # given: alice approved, which settled it (quorum any)
    decision = Refund(api_key=acme_key[0])
    alice_links = emailed_links(decision, ALICE, mailoutbox)
    assert confirm(alice_links["Approve"], note="Checked the statement").status_code == 200
    settled = snapshot(decision)
    resolved_at = Decision.objects.get(pk=decision.pk).resolved_at

    # when: the same link is posted again, and then her deny link
    again = confirm(alice_links["Approve"], note="second try")
    deny = confirm(alice_links["Deny"], note="changed my mind")

    # then
    for response in (again, deny):
        assert_html_page(response, 409)
        page = text_of(response)
        assert "This decision is closed. Nothing was changed." in page
        assert "Approved" in page
        assert f"by {ALICE} via email, {when(resolved_at)}" in page
        assert "Note: Checked the statement" in page
        assert "second try" not in page
    assert snapshot(decision) == settled
    assert len(events(decision, "decision.answered")) == 1
    assert len(events(decision, "decision.resolved")) == 1


def test_alices_second_answer_while_others_are_still_asked_is_refused(acme_key, mailoutbox):
    # given: everyone must approve; alice has, bob has not
    decision = Refund(api_key=acme_key[0], quorum="all")
    alice_links = emailed_links(decision, ALICE, mailoutbox)
    assert confirm(alice_links["Approve"]).status_code == 200
    before = snapshot(decision)

    # when: alice clicks deny as well (she cannot take her approval back, nor vote twice)
    response = confirm(alice_links["Deny"])

    # then
    assert_html_page(response, 409)
    page = text_of(response)
    assert "You already answered: approve" in page
    assert "waits for the other approvers" in page
    assert snapshot(decision) == before
    assert request_of(decision, BOB).state == ApprovalRequest.State.PENDING
    # And viewing her link again says the same, with a 200: a GET is not an error.
    view = browser().get(alice_links["Approve"])
    assert_html_page(view, 200)
    assert "You already answered: approve" in text_of(view)
    assert "<form" not in view.content.decode()


def test_a_link_of_an_expired_decision_says_so_and_cannot_answer(acme_key, mailoutbox):
    # given: the deadline passed a moment ago; the clock has not resolved it yet
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    expired_at = timezone.now() - timedelta(seconds=1)
    Decision.objects.filter(pk=decision.pk).update(expires_at=expired_at)
    before = snapshot(decision)

    # when
    view = browser().get(approve)
    post = confirm(approve, note="sorry, late")

    # then
    assert_html_page(view, 200)
    assert_html_page(post, 409)
    for response in (view, post):
        page = text_of(response)
        assert "Expired" in page
        assert f"Nobody answered before {when(expired_at)}. Nothing was changed." in page
        assert "<form" not in response.content.decode()
    assert snapshot(decision) == before
    assert before[0] == "pending"  # still for the clock to expire, not for a late click
    assert events(decision, "decision.answered") == []


def test_a_link_of_a_cancelled_decision_shows_the_agent_cancelled_it_and_cannot_answer(acme_key, mailoutbox):
    # given: the agent withdrew the request after alice's email went out
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    decision_cancel(decision=decision, actor=acme_key[0].actor)
    cancelled_at = Decision.objects.get(pk=decision.pk).resolved_at
    before = snapshot(decision)

    # when
    view = browser().get(approve)
    post = confirm(approve)

    # then
    assert_html_page(view, 200)
    assert_html_page(post, 409)
    for response in (view, post):
        page = text_of(response)
        assert "Cancelled" in page
        assert f"by {acme_key[0].actor} via api, {when(cancelled_at)}" in page
        assert "Nothing was changed" in page
    assert snapshot(decision) == before
    assert events(decision, "decision.answered") == []


def test_alices_link_after_bob_approved_shows_bobs_answer_and_cannot_answer(acme_key, mailoutbox):
    # given: alice and bob were both asked (any one suffices); bob approved first
    decision = Refund(api_key=acme_key[0], approvers=(ALICE, BOB, CAROL))
    alice_links = emailed_links(decision, ALICE, mailoutbox)
    bob_links = emailed_links(decision, BOB, mailoutbox)
    assert confirm(bob_links["Approve"], note="Fine by me").status_code == 200
    resolved_at = Decision.objects.get(pk=decision.pk).resolved_at
    before = snapshot(decision)

    # when: alice opens her link, then presses deny anyway
    view = browser().get(alice_links["Deny"])
    post = confirm(alice_links["Deny"], note="I disagree")

    # then
    assert_html_page(view, 200)
    assert_html_page(post, 409)
    for response in (view, post):
        page = text_of(response)
        assert "Approved" in page
        assert f"by {BOB} via email, {when(resolved_at)}" in page
        assert "Note: Fine by me" in page
    assert snapshot(decision) == before
    assert request_of(decision, ALICE).state == ApprovalRequest.State.CLOSED
    [answered] = events(decision, "decision.answered")
    assert answered.actor == BOB


def test_alices_link_answers_only_for_alice(acme_key, mailoutbox):
    # given: all three must approve
    decision = Refund(api_key=acme_key[0], approvers=(ALICE, BOB, CAROL), quorum="all")
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]

    # when
    assert confirm(approve).status_code == 200

    # then: alice's request is answered; bob's and carol's are untouched
    states = dict(Decision.objects.get(pk=decision.pk).requests.values_list("address", "state"))
    assert states == {ALICE: "answered", BOB: "pending", CAROL: "pending"}
    [answered] = events(decision, "decision.answered")
    assert answered.actor == ALICE
