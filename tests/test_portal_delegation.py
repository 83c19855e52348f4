"""Delegation: 'away until …, delegate to …'. alice, away, delegates to bob: Acme's new asks for
alice go to bob, on her behalf; Globex forbids delegation, so its asks still reach alice.
Cycles are refused; 'I'm back' ends it. Set in the portal (here with Django's test client) or by
an admin.
"""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from decisions.models import ApprovalRequest, Status
from portal import services
from portal.models import Delegation, OrganizationPortalSettings
from tests.conftest import ALICE, BOB, CAROL
from tests.portal_helpers import ask, signed_in, tasks_run_here  # noqa: F401 (fixture)

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("tasks_run_here")]


@pytest.fixture
def alice(mailoutbox, acme_key):
    ask(acme_key, approvers=[ALICE], action="Warm-up")
    return signed_in(Client(), mailoutbox, ALICE)


def tomorrow_local() -> str:
    return (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")


def asked(decision) -> list[tuple[str, str]]:
    return list(ApprovalRequest.objects.filter(decision=decision).values_list("address", "on_behalf_of"))


def test_while_alice_is_away_new_asks_go_to_bob_on_her_behalf(alice, mailoutbox, acme_key):
    before = ask(acme_key, approvers=[ALICE], action="Asked before she left")
    response = alice.post(
        "/inbox/away", {"until": tomorrow_local(), "tz": "Europe/Paris", "delegate": " Bob@Example.com"}
    )
    assert response.status_code == 302
    delegation = Delegation.objects.get(address=ALICE)
    assert delegation.delegate == BOB
    assert delegation.until.utcoffset() == timedelta(0)  # stored in UTC, typed in Paris time

    refund = ask(acme_key, approvers=[ALICE], action="Refund $120")
    assert asked(refund) == [(BOB, ALICE)]
    assert asked(before) == [(ALICE, "")]  # asks already made stay with her
    event = AuditEvent.objects.get(decision=refund, event="approver.asked")
    assert json.loads(event.payload)["on_behalf_of"] == ALICE
    set_event = AuditEvent.objects.get(event="delegation.set", organization=acme_key[0].organization)
    assert (set_event.actor, json.loads(set_event.payload)["delegate"]) == (ALICE, BOB)

    # bob sees it as his, on alice's behalf, and answers it.
    bob = signed_in(Client(), mailoutbox, BOB)
    page = bob.get("/inbox").content.decode()
    assert "Refund $120" in page
    assert f"on behalf of {ALICE}" in page
    assert bob.post(f"/inbox/{refund.id}/answer", {"choice": "approve"}).status_code == 302
    refund.refresh_from_db()
    assert (refund.status, refund.outcome["by"]) == (Status.APPROVED, BOB)
    # alice does not see it: it was not put to her.
    assert alice.get(f"/inbox/{refund.id}").status_code == 404


def test_the_api_shows_on_whose_behalf(api, alice):
    alice.post("/inbox/away", {"until": tomorrow_local(), "tz": "UTC", "delegate": BOB})
    created = api.post("/decisions", {"action": "Refund", "approver": ALICE}, format="json").json()
    assert [(r["address"], r["on_behalf_of"]) for r in created["requests"]] == [(BOB, ALICE)]


def test_an_organization_can_forbid_delegation(alice, acme_key, globex_key):
    OrganizationPortalSettings.objects.create(organization=globex_key[0].organization, allow_delegation=False)
    alice.post("/inbox/away", {"until": tomorrow_local(), "tz": "UTC", "delegate": BOB})
    assert asked(ask(globex_key, approvers=[ALICE], action="Globex asks")) == [(ALICE, "")]
    assert asked(ask(acme_key, approvers=[ALICE], action="Acme asks")) == [(BOB, ALICE)]


def test_delegations_chain_and_a_cycle_is_refused(alice, mailoutbox, acme_key):
    ask(acme_key, approvers=[BOB], action="bob may sign in")
    until = timezone.now() + timedelta(days=2)
    services.delegation_set(address=BOB, delegate=CAROL, until=until, set_by=BOB)
    alice.post("/inbox/away", {"until": tomorrow_local(), "tz": "UTC", "delegate": BOB})
    assert asked(ask(acme_key, approvers=[ALICE], action="Chained")) == [(CAROL, ALICE)]

    # carol → alice would close the circle alice → bob → carol → alice.
    with pytest.raises(services.InvalidInput, match="already delegates to you"):
        services.delegation_set(address=CAROL, delegate=ALICE, until=until, set_by=CAROL)
    bob = signed_in(Client(), mailoutbox, BOB)
    # bob → alice: alice already hands to bob.
    response = bob.post("/inbox/away", {"until": tomorrow_local(), "tz": "UTC", "delegate": ALICE})
    assert response.status_code == 400
    assert (
        f"{ALICE} already delegates to you: delegation cannot go round in a circle."
        in response.content.decode()
    )
    assert Delegation.objects.get(address=BOB).delegate == CAROL


def test_a_delegate_already_asked_is_asked_once(alice, acme_key):
    alice.post("/inbox/away", {"until": tomorrow_local(), "tz": "UTC", "delegate": BOB})
    both = ask(acme_key, approvers=[ALICE, BOB], action="Both asked")
    assert asked(both) == [(BOB, "")]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"delegate": ALICE}, "Delegate to someone else."),
        ({"delegate": "not an address"}, "Delegate to an email address."),
        ({"until": "2020-01-01T10:00"}, "&#x27;Away until&#x27; must be in the future, within a year."),
        ({"until": "2099-01-01T10:00"}, "&#x27;Away until&#x27; must be in the future, within a year."),
        ({"until": "tomorrow"}, "Enter the date and time you are back."),
        ({"tz": "Mars/Olympus"}, "Unknown time zone &#x27;Mars/Olympus&#x27;."),
    ],
)
def test_bad_away_input_is_a_clear_400(alice, acme_key, form, message):
    response = alice.post("/inbox/away", {"until": tomorrow_local(), "tz": "UTC", "delegate": BOB, **form})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Delegation.objects.exists()
    assert asked(ask(acme_key, approvers=[ALICE], action="Still hers")) == [(ALICE, "")]


def test_back_ends_it_and_an_ended_delegation_routes_nothing(alice, acme_key):
    alice.post("/inbox/away", {"until": tomorrow_local(), "tz": "UTC", "delegate": BOB})
    assert "You are away until" in alice.get("/inbox/away").content.decode()
    alice.post("/inbox/away", {"back": "yes"})
    assert not Delegation.objects.exists()
    assert asked(ask(acme_key, approvers=[ALICE], action="Back")) == [(ALICE, "")]
    assert AuditEvent.objects.filter(event="delegation.cleared", actor=ALICE).exists()

    alice.post("/inbox/away", {"until": tomorrow_local(), "tz": "UTC", "delegate": BOB})
    Delegation.objects.update(until=timezone.now() - timedelta(seconds=1))
    assert asked(ask(acme_key, approvers=[ALICE], action="Over")) == [(ALICE, "")]


def test_an_admin_sets_a_delegation_through_the_same_checks(admin_client, acme_key):
    ask(acme_key, approvers=[ALICE], action="Warm-up")
    until = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    date, time = until.split(" ")
    form = {"address": ALICE, "delegate": BOB, "until_0": date, "until_1": time}
    response = admin_client.post("/admin/portal/delegation/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Delegation.objects.get(address=ALICE).set_by == "admin:admin"
    assert asked(ask(acme_key, approvers=[ALICE], action="Routed by admin")) == [(BOB, ALICE)]

    refused = admin_client.post("/admin/portal/delegation/add/", {**form, "address": BOB, "delegate": ALICE})
    assert refused.status_code == 200
    assert "already delegates to you" in refused.content.decode()


def test_an_ask_is_never_delegated_to_the_requester(alice, api):
    alice.post("/inbox/away", {"until": tomorrow_local(), "tz": "UTC", "delegate": BOB})
    created = api.post(
        "/decisions", {"action": "Bob's own wire", "approver": ALICE, "requested_by": BOB}, format="json"
    ).json()
    assert [(r["address"], r["on_behalf_of"]) for r in created["requests"]] == [(ALICE, None)]
