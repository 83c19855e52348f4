"""The portal's passkey endpoints given bad input, through Django's test client: each a clear
JSON error (or the page again with the error), nothing registered and nothing answered. The
ceremonies themselves run in Chromium's virtual authenticator (tests/test_browser_portal.py).
"""

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from decisions.models import Status
from portal.models import Approver, Passkey
from portal.sessions import SIGNED_IN_AT
from tests.conftest import ALICE, BOB
from tests.portal_helpers import ask, signed_in_alice_fixture, tasks_run_here  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("tasks_run_here")]


def error_of(response) -> dict:
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


def test_registration_options_need_a_fresh_sign_in(alice):
    options = alice.post("/inbox/passkeys/options")
    assert options.status_code == 200
    body = options.json()
    assert body["rp"] == {"id": "127.0.0.1", "name": "Countersign"}
    assert body["authenticatorSelection"]["userVerification"] == "required"

    session = alice.session
    session[SIGNED_IN_AT] = (timezone.now() - timedelta(minutes=16)).isoformat()
    session.save()
    stale = alice.post("/inbox/passkeys/options")
    assert stale.status_code == 403
    assert error_of(stale)["code"] == "fresh_sign_in_required"
    assert "Email me a fresh sign-in link" in alice.get("/inbox/passkeys").content.decode()


def test_registering_without_a_ceremony_is_a_400(alice):
    response = alice.post("/inbox/passkeys/register", "{}", content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["message"] == "Start again: use the 'Add a passkey' button."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "Send {name, credential} as JSON."),
        ("[]", "Send {name, credential} as JSON."),
        (
            json.dumps({"name": "", "credential": {}}),
            "Name the passkey (up to 100 characters), e.g. 'Work laptop'.",
        ),
        (
            json.dumps({"name": "x" * 101, "credential": {}}),
            "Name the passkey (up to 100 characters), e.g. 'Work laptop'.",
        ),
        (json.dumps({"name": "Laptop", "credential": "nope"}), "The passkey's answer must be an object."),
        (json.dumps({"name": "Laptop", "credential": {"id": "x"}}), "The passkey could not be registered"),
    ],
)
def test_a_bad_registration_is_a_clear_400(alice, body, message):
    assert alice.post("/inbox/passkeys/options").status_code == 200
    response = alice.post("/inbox/passkeys/register", body, content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["message"].startswith(message)
    assert not Passkey.objects.exists()


def test_answer_options_without_a_passkey_or_for_another_approver(alice, acme_key):
    mine = ask(acme_key, approvers=[ALICE], action="Wire", verification="passkey")
    bobs = ask(acme_key, approvers=[BOB], action="Bob's wire", verification="passkey")
    none_yet = alice.post(f"/inbox/{mine.id}/passkey-options")
    assert none_yet.status_code == 400
    assert error_of(none_yet)["message"].startswith("Register a passkey first")
    assert alice.post(f"/inbox/{bobs.id}/passkey-options").status_code == 404


def test_a_forged_or_stale_passkey_answer_answers_nothing(alice, acme_key):
    wire = ask(acme_key, approvers=[ALICE], action="Wire", verification="passkey")
    Passkey.objects.create(
        approver=Approver.objects.get(address=ALICE), name="Laptop", credential_id="AAAA", public_key=b"k"
    )
    # No challenge asked for this decision: whatever the form carries is refused.
    response = alice.post(f"/inbox/{wire.id}/answer", {"choice": "approve", "passkey": '{"id": "AAAA"}'})
    assert response.status_code == 400
    assert "Start again: press the answer button once more." in response.content.decode()

    assert alice.post(f"/inbox/{wire.id}/passkey-options").status_code == 200
    for forged in ("not json", '{"id": "BBBB"}', '{"id": "AAAA", "response": {}}'):
        alice.post(f"/inbox/{wire.id}/passkey-options")
        response = alice.post(f"/inbox/{wire.id}/answer", {"choice": "approve", "passkey": forged})
        assert response.status_code == 400, forged
    # Without the passkey the session is not enough.
    assert alice.post(f"/inbox/{wire.id}/answer", {"choice": "approve"}).status_code == 403
    wire.refresh_from_db()
    assert wire.status == Status.PENDING


def test_a_passkey_is_removed_only_by_its_owner(alice, acme_key):
    bob = Approver.objects.create(address=BOB)
    bobs = Passkey.objects.create(approver=bob, name="Bob's", credential_id="BOB", public_key=b"k")
    assert alice.post(f"/inbox/passkeys/{bobs.pk}/delete").status_code == 404
    mine = Passkey.objects.create(
        approver=Approver.objects.get(address=ALICE), name="Mine", credential_id="ALICE", public_key=b"k"
    )
    assert alice.post(f"/inbox/passkeys/{mine.pk}/delete").status_code == 302
    assert list(Passkey.objects.values_list("name", flat=True)) == ["Bob's"]


def test_a_passkey_decisions_page_has_its_action_as_title_and_its_script_once(alice, acme_key):
    wire = ask(acme_key, approvers=[ALICE], action="Wire $9,000 to ACME Ltd", verification="passkey")
    Passkey.objects.create(
        approver=Approver.objects.get(address=ALICE), name="Laptop", credential_id="AAAA", public_key=b"k"
    )

    page = alice.get(f"/inbox/{wire.id}").content.decode()

    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert title == "Wire $9,000 to ACME Ltd · Countersign"
    assert page.count("navigator.credentials.get") == 1
