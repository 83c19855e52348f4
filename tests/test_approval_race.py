"""Concurrent clicks on approval links, on PostgreSQL: many browsers POST at once, one wins.

Each thread is one approver's browser (its own django.test.Client, so its own request and its
own database connection), all released together by a barrier. The contract's promise: the first
valid answer wins, everyone else is shown a page saying it was already decided, and the trail
records exactly one answer and one resolution.

WHY transactional_db: each thread has its own connection and sees only committed rows; a test
wrapped in one transaction would hide its data from them.
"""

import io
from collections import Counter
from urllib.parse import urlencode

import factory
import pytest
from django.core.management import call_command
from django.test import Client

from audit.models import AuditEvent
from decisions.links import link_token
from decisions.models import ApprovalRequest, Decision, Status
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import DecisionFactory
from tests.helpers import race

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROUNDS = 3  # races are probabilistic: run the two-way one a few times
APPROVERS = [f"approver{n:02d}@example.com" for n in range(1, 21)]


@pytest.fixture(autouse=True)
def _no_publishing(monkeypatch):
    # Committed decisions publish their email tasks on commit. Nobody consumes them here, and
    # they would pile up in the shared broker: what is under test is the pages and the database.
    monkeypatch.setattr("notifications.services._publish", lambda delivery_ids: None)


class Refund(DecisionFactory):
    action = "Refund order #1042 for €1,200"
    details = factory.Dict({"amount": 1200, "currency": "EUR"})


def link(decision: Decision, address: str, choice: str) -> str:
    """The path of the approver's link for a choice: what their email's button points at."""
    request = decision.requests.get(address=address)
    return f"/a/{link_token(request, choice)}"


def click_confirm(path: str, note: str):
    """One approver's browser pressing the confirm button."""

    def press():
        client = Client(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
        body = urlencode({"confirm": "yes", "note": note})
        response = client.post(path, body, content_type="application/x-www-form-urlencoded")
        return response.status_code, response.content.decode()

    return press


def events(decision: Decision, event: str):
    return AuditEvent.objects.filter(decision_id=decision.pk, event=event)


def verify_audit() -> str:
    out = io.StringIO()
    call_command("verify_audit", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def split(results) -> tuple[list, list, list]:
    """(winners, losers, anything else) among (status, page) results."""
    unexpected = [r for r in results if not isinstance(r, tuple) or r[0] not in (200, 409)]
    winners = [r for r in results if isinstance(r, tuple) and r[0] == 200]
    losers = [r for r in results if isinstance(r, tuple) and r[0] == 409]
    return winners, losers, unexpected


def test_twenty_approvers_clicking_approve_at_once_yield_one_answer(acme_key):
    # given: twenty approvers, any one of whom settles it
    decision = Refund(api_key=acme_key[0], approvers=APPROVERS)
    paths = {address: link(decision, address, "approve") for address in APPROVERS}

    # when: all twenty press confirm at the same moment
    results = race(*(click_confirm(paths[address], note=f"from {address}") for address in APPROVERS))

    # then: one thank-you page, nineteen pages saying it was already decided
    winners, losers, unexpected = split(results)
    assert unexpected == []
    assert len(winners) == 1
    assert len(losers) == 19
    assert "Thank you — your answer is recorded: Approve." in winners[0][1]
    decision = Decision.objects.get(pk=decision.pk)
    assert decision.status == Status.APPROVED
    winner = decision.outcome["by"]
    assert f"from {winner}" == decision.outcome["note"]
    for _, page in losers:
        assert "This decision is closed. Nothing was changed." in page
        assert f"by {winner} via email" in page
    # Losers never record an answer: one decision.answered, one decision.resolved.
    assert events(decision, "decision.answered").count() == 1
    assert events(decision, "decision.answered").get().actor == winner
    assert events(decision, "decision.resolved").count() == 1
    states = Counter(decision.requests.values_list("state", flat=True))
    assert states == {ApprovalRequest.State.ANSWERED: 1, ApprovalRequest.State.CLOSED: 19}
    assert decision.requests.get(state=ApprovalRequest.State.ANSWERED).address == winner
    assert "intact" in verify_audit()


def test_ten_clicks_on_the_same_link_at_once_answer_once(acme_key):
    # given: alice's approve link, opened in ten tabs (or retried by a flaky network)
    decision = Refund(api_key=acme_key[0], approvers=[ALICE, BOB])
    path = link(decision, ALICE, "approve")

    # when
    results = race(*(click_confirm(path, note=f"tab {n}") for n in range(10)))

    # then
    winners, losers, unexpected = split(results)
    assert unexpected == []
    assert (len(winners), len(losers)) == (1, 9)
    decision = Decision.objects.get(pk=decision.pk)
    assert decision.status == Status.APPROVED
    assert decision.outcome["by"] == ALICE
    assert events(decision, "decision.answered").count() == 1
    assert events(decision, "decision.resolved").count() == 1
    assert "intact" in verify_audit()


def test_ten_clicks_on_the_same_link_under_quorum_all_count_as_one_approval(acme_key):
    # given: alice and bob must both approve; alice clicks ten times at once
    decision = Refund(api_key=acme_key[0], approvers=[ALICE, BOB], quorum="all")
    path = link(decision, ALICE, "approve")

    # when
    results = race(*(click_confirm(path, note=f"tab {n}") for n in range(10)))

    # then: her one approval is counted once, and the decision still waits for bob
    winners, losers, unexpected = split(results)
    assert unexpected == []
    assert (len(winners), len(losers)) == (1, 9)
    for _, page in losers:
        assert "You already answered: approve" in page
    decision = Decision.objects.get(pk=decision.pk)
    assert decision.status == Status.PENDING
    assert events(decision, "decision.answered").count() == 1
    assert dict(decision.requests.values_list("address", "state")) == {ALICE: "answered", BOB: "pending"}


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_approve_against_deny_at_once_yields_the_winners_outcome(acme_key, round_):
    # given: alice and bob, any one settles it; alice approves while bob denies
    decision = Refund(api_key=acme_key[0], approvers=[ALICE, BOB])
    approve = click_confirm(link(decision, ALICE, "approve"), note="alice says yes")
    deny = click_confirm(link(decision, BOB, "deny"), note="bob says no")

    # when
    results = race(approve, deny)

    # then: exactly one of them won, and the outcome is theirs
    winners, losers, unexpected = split(results)
    assert unexpected == []
    assert (len(winners), len(losers)) == (1, 1)
    decision = Decision.objects.get(pk=decision.pk)
    alice_won = results[0][0] == 200
    expected = ("approved", "approve", ALICE) if alice_won else ("denied", "deny", BOB)
    assert (decision.status, decision.outcome["choice"], decision.outcome["by"]) == expected
    assert f"your answer is recorded: {expected[1].capitalize()}" in winners[0][1]
    assert f"by {expected[2]} via email" in losers[0][1]
    assert events(decision, "decision.answered").count() == 1
    assert events(decision, "decision.resolved").count() == 1
    loser = BOB if alice_won else ALICE
    assert decision.requests.get(address=loser).state == ApprovalRequest.State.CLOSED


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_three_approving_at_once_under_two_of_three_resolve_it_once(acme_key, round_):
    # given: any two of alice, bob and carol must approve
    decision = Refund(api_key=acme_key[0], approvers=[ALICE, BOB, CAROL], quorum=2)

    # when: all three press approve at once
    results = race(*(click_confirm(link(decision, a, "approve"), note=a) for a in (ALICE, BOB, CAROL)))

    # then: the row lock makes the count exact: two answers settle it, the third is too late
    winners, losers, unexpected = split(results)
    assert unexpected == []
    assert (len(winners), len(losers)) == (2, 1)
    decision = Decision.objects.get(pk=decision.pk)
    assert decision.status == Status.APPROVED
    assert events(decision, "decision.answered").count() == 2
    assert events(decision, "decision.resolved").count() == 1
    assert Counter(decision.requests.values_list("state", flat=True)) == {"answered": 2, "closed": 1}
    assert "intact" in verify_audit()
