"""Callbacks: when a decision resolves, its callback_url gets one POST signed per the Standard
Webhooks spec, retried with backoff on errors, given up on 4xx, every attempt recorded.

Acme's agent asks alice to sign off a refund and waits for the outcome at a real HTTP
receiver on 127.0.0.1 (allowed here through CALLBACK_ALLOW_PRIVATE, as in local
development). Each test drives the outbox by hand with delivery_attempt: no worker needed.
Every callback is checked with the Standard Webhooks reference verifier, not with our own
signing code.
"""

import email.utils
import io
import json
import threading
import types
from datetime import timedelta

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from audit.models import AuditEvent
from decisions.models import Decision
from decisions.services import (
    DecisionSpec,
    decision_answer,
    decision_cancel,
    decision_create,
    decision_expire,
)
from notifications import callbacks
from notifications.models import Delivery, DeliveryAttempt
from notifications.services import MAX_ATTEMPTS, delivery_attempt, delivery_redeliver
from organizations.models import WebhookSecret
from organizations.services import ROTATION_OVERLAP, webhook_secret_current
from tests.conftest import ALICE
from tests.factories import DecisionFactory
from tests.helpers import wait_for
from tests.receiver import Close, Hang, Huge, Received, Redirect, Reply, receiver_fixture  # noqa: F401

ACTION = "Refund order #1234 for $80"
AGENT = "acme agent"


@pytest.fixture(autouse=True)
def _private_callbacks_allowed(settings):
    # The receiver listens on 127.0.0.1, which callbacks reach only when the operator allows
    # private addresses (local development, tests). The refusal itself is in test_ssrf.py.
    settings.CALLBACK_ALLOW_PRIVATE = True


@pytest.fixture(autouse=True)
def _no_publishing(monkeypatch):
    # Committed transactions (in the transactional tests) publish delivery tasks; nobody
    # consumes them here: each test runs its attempts itself.
    monkeypatch.setattr("notifications.services._publish", lambda delivery_ids: None)


# --- helpers --------------------------------------------------------------------------------


class CallbackDecision(DecisionFactory):
    """A decision put to alice whose outcome is posted to a callback_url."""

    action = ACTION


def alice_answers(decision: Decision, choice: str, note: str = "") -> Decision:
    request = decision.requests.get(address=ALICE)
    return decision_answer(request_id=request.pk, choice=choice, note=note, via="email")


def resolved_callback(acme_key, url: str) -> Delivery:
    """A decision alice has approved, and the callback delivery it left in the outbox."""
    decision = CallbackDecision(api_key=acme_key[0], callback_url=url)
    alice_answers(decision, "approve")
    return callback_of(decision)


def callback_of(decision: Decision) -> Delivery:
    return Delivery.objects.get(decision=decision, kind=Delivery.Kind.CALLBACK)


def attempt(delivery: Delivery) -> Delivery:
    delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def make_due(delivery: Delivery) -> None:
    """Skip the backoff: the retry is due now."""
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def attempts_of(delivery: Delivery) -> list[DeliveryAttempt]:
    return list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("number", "pk"))


def secret_of(organization) -> str:
    return webhook_secret_current(organization=organization).secret


def verify(request: Received, secret: str) -> dict:
    """The Standard Webhooks reference verifier: raises unless one signature matches."""
    return Webhook(secret).verify(request.body, request.headers)


def audit_events(decision_id: str, event: str) -> list[dict]:
    rows = AuditEvent.objects.filter(decision_id=decision_id, event=event).order_by("pk")
    return [json.loads(row.payload) for row in rows]


def webhook_secret(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("webhook_secret", *args, stdout=out)
    return out.getvalue().splitlines()


# --- one signed POST with the decision object ------------------------------------------------


def test_alices_approval_is_posted_once_signed_with_the_decision_object(acme, acme_key, api, receiver):
    # given
    decision = CallbackDecision(api_key=acme_key[0], callback_url=receiver.url("/hook"))
    alice_answers(decision, "approve", note="fine by me")
    delivery = callback_of(decision)

    # when
    before = timezone.now()
    attempt(delivery)
    after = timezone.now()

    # then: one POST, and the reference verifier accepts it with Acme's secret
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == callbacks.webhook_id(delivery)
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["webhook-signature"].startswith("v1,")
    sent_at = int(request.headers["webhook-timestamp"])
    assert int(before.timestamp()) <= sent_at <= int(after.timestamp())
    event = verify(request, secret_of(acme))

    # the body is {type, timestamp, data}, data exactly what GET /decisions/{id} answers
    assert set(event) == {"type", "timestamp", "data"}
    assert event["type"] == "decision.resolved"
    assert event["data"] == api.get(f"/decisions/{decision.id}").json()
    assert event["timestamp"] == event["data"]["resolved_at"]
    assert event["data"]["id"] == decision.id
    assert event["data"]["status"] == "approved"
    assert event["data"]["callback_url"] == receiver.url("/hook")
    outcome = event["data"]["outcome"]
    assert (outcome["status"], outcome["choice"], outcome["by"], outcome["via"], outcome["note"]) == (
        "approved",
        "approve",
        ALICE,
        "email",
        "fine by me",
    )

    # and the outbox knows it went out, once, in the audit trail too
    assert (delivery.status, delivery.attempts) == (Delivery.Status.SENT, 1)
    [logged] = attempts_of(delivery)
    assert (logged.number, logged.ok, logged.status_code, logged.error) == (1, True, 200, "")
    assert logged.response_snippet == "ok"
    assert len(audit_events(decision.id, "callback.delivered")) == 1
    assert not audit_events(decision.id, "callback.failed")


def approve(decision):
    alice_answers(decision, "approve")


def deny(decision):
    alice_answers(decision, "deny", note="not this quarter")


def ask_legal(decision):
    alice_answers(decision, "ask legal")


def cancel(decision):
    decision_cancel(decision=decision, actor=AGENT)


def expire(decision):
    Decision.objects.filter(pk=decision.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert decision_expire(decision_id=decision.pk) is not None


@pytest.mark.parametrize(
    ("resolve", "status", "choice", "by", "via"),
    [
        (approve, "approved", "approve", ALICE, "email"),
        (deny, "denied", "deny", ALICE, "email"),
        (ask_legal, "responded", "ask legal", ALICE, "email"),
        (cancel, "cancelled", None, AGENT, "api"),
        (expire, "expired", None, "system", "timeout"),
    ],
    ids=["approved", "denied", "responded", "cancelled", "expired"],
)
def test_every_way_of_resolving_sends_a_verified_callback_with_the_outcome(
    acme, acme_key, receiver, resolve, status, choice, by, via
):
    # given
    decision = CallbackDecision(
        api_key=acme_key[0], callback_url=receiver.url(), options=["approve", "deny", "ask legal"]
    )

    # when
    resolve(decision)
    attempt(callback_of(decision))

    # then
    [request] = receiver.requests
    event = verify(request, secret_of(acme))
    assert event["type"] == "decision.resolved"
    assert event["data"]["status"] == status
    outcome = event["data"]["outcome"]
    assert (outcome["status"], outcome["choice"], outcome["by"], outcome["via"]) == (status, choice, by, via)


def test_a_decision_without_callback_url_leaves_no_callback_in_the_outbox(acme_key):
    decision, _ = decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(action=ACTION, stages=[{"approvers": [ALICE], "quorum": "any"}]),
    )

    decision_cancel(decision=decision, actor=AGENT)

    assert not Delivery.objects.filter(decision=decision, kind=Delivery.Kind.CALLBACK).exists()


def test_a_forged_or_tampered_callback_fails_the_reference_verifier(acme, acme_key, receiver):
    # A sanity check of the check itself: the verifier does reject what we did not sign.
    attempt(resolved_callback(acme_key, receiver.url()))
    [request] = receiver.requests

    tampered = Received(**{**vars(request), "body": request.body.replace(b"approved", b"denied")})
    with pytest.raises(WebhookVerificationError):
        verify(tampered, secret_of(acme))
    with pytest.raises(WebhookVerificationError):
        verify(request, "whsec_" + "A" * 43 + "=")


# --- retries --------------------------------------------------------------------------------


def test_500_then_503_then_200_is_three_attempts_with_one_webhook_id_each_validly_signed(
    acme, acme_key, receiver
):
    # given: the receiver is down, then overloaded, then back
    receiver.script(Reply(500, body=b"boom"), Reply(503, body=b"busy"), Reply(200, body=b"thanks"))
    delivery = resolved_callback(acme_key, receiver.url())

    # when: the first attempt fails ...
    before = timezone.now()
    attempt(delivery)

    # then: it stays pending with a retry scheduled in the future
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.next_attempt_at > before
    assert delivery.last_error == "receiver answered 500"

    # when: each retry is made due and attempted
    make_due(delivery)
    attempt(delivery)
    assert delivery.status == Delivery.Status.PENDING
    make_due(delivery)
    attempt(delivery)

    # then: three requests, one webhook-id (receivers deduplicate on it), each verifiable
    assert delivery.status == Delivery.Status.SENT
    assert len(receiver.requests) == 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {callbacks.webhook_id(delivery)}
    secret = secret_of(acme)
    bodies = [verify(request, secret) for request in receiver.requests]
    assert all(body == bodies[0] for body in bodies)

    # and every attempt is on record
    logged = attempts_of(delivery)
    assert [(a.number, a.status_code, a.ok) for a in logged] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert [a.response_snippet for a in logged] == ["boom", "busy", "thanks"]
    assert [a.error for a in logged] == ["receiver answered 500", "receiver answered 503", ""]
    assert all(a.duration_ms >= 0 and a.started_at is not None for a in logged)
    [delivered] = audit_events(delivery.decision_id, "callback.delivered")
    assert delivered["attempts"] == 3
    assert not audit_events(delivery.decision_id, "callback.failed")


def test_each_attempt_is_signed_afresh_with_its_own_timestamp(acme, acme_key, receiver, monkeypatch):
    # given: a first attempt the receiver refuses with a 503
    receiver.script(Reply(503))
    delivery = resolved_callback(acme_key, receiver.url())
    attempt(delivery)

    # when: the retry happens 90 s later (a shifted clock stands in for the wait)
    later = timezone.now() + timedelta(seconds=90)
    monkeypatch.setattr(callbacks, "timezone", types.SimpleNamespace(now=lambda: later))
    make_due(delivery)
    attempt(delivery)

    # then: same id, new timestamp, new signature, and both verify (within the 5 min tolerance)
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) >= 89
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert first.body == second.body
    verify(first, secret_of(acme))
    verify(second, secret_of(acme))


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_done(acme_key, receiver, status):
    receiver.script(Reply(status, body=b""))
    delivery = resolved_callback(acme_key, receiver.url())

    attempt(delivery)

    assert delivery.status == Delivery.Status.SENT
    assert [(a.ok, a.status_code) for a in attempts_of(delivery)] == [(True, status)]


def test_a_receiver_down_for_good_is_retried_for_over_24_hours_then_given_up(acme_key, receiver):
    # CONTRACT: a non-2xx is retried with exponential backoff for at least 24 hours. Walk the
    # delivery through every attempt, making each retry due at once, adding up the delays.
    receiver.script(*[Reply(503)] * MAX_ATTEMPTS)
    delivery = resolved_callback(acme_key, receiver.url())
    delays = []
    for _ in range(MAX_ATTEMPTS - 1):
        before = timezone.now()
        attempt(delivery)
        assert delivery.status == Delivery.Status.PENDING
        delays.append(delivery.next_attempt_at - before)
        make_due(delivery)

    attempt(delivery)

    waited = sum(delays, timedelta(0))
    assert waited > timedelta(hours=24)
    # backing off: seconds at first, most of a day at the end
    assert delays[0] < timedelta(seconds=10)
    assert delays[-1] > timedelta(hours=12)
    assert delivery.status == Delivery.Status.FAILED
    assert len(receiver.requests) == MAX_ATTEMPTS
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    [failed] = audit_events(delivery.decision_id, "callback.failed")
    assert f"gave up after {MAX_ATTEMPTS} attempts" in failed["reason"]


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_a_server_error_or_request_timeout_is_retried_with_backoff(acme_key, receiver, status):
    receiver.script(Reply(status, body=b"try later"))
    delivery = resolved_callback(acme_key, receiver.url())

    before = timezone.now()
    attempt(delivery)
    after = timezone.now()

    # then: the first retry about 5 s out (±10% jitter), nothing given up
    assert delivery.status == Delivery.Status.PENDING
    assert before + timedelta(seconds=4.5) <= delivery.next_attempt_at <= after + timedelta(seconds=5.5)
    assert delivery.lease_until is None
    [logged] = attempts_of(delivery)
    assert (logged.ok, logged.status_code, logged.response_snippet) == (False, status, "try later")
    assert not audit_events(delivery.decision_id, "callback.failed")


def test_429_with_retry_after_120_is_retried_no_earlier_than_asked(acme_key, receiver):
    receiver.script(Reply(429, {"Retry-After": "120"}, b"slow down"))
    delivery = resolved_callback(acme_key, receiver.url())

    before = timezone.now()
    attempt(delivery)
    after = timezone.now()

    assert delivery.status == Delivery.Status.PENDING
    assert before + timedelta(seconds=120) <= delivery.next_attempt_at <= after + timedelta(seconds=120)
    assert "429" in delivery.last_error
    [logged] = attempts_of(delivery)
    assert (logged.ok, logged.status_code) == (False, 429)


def test_429_with_retry_after_as_an_http_date_is_honoured(acme_key, receiver):
    # RFC 9110 allows Retry-After as a date; it has whole-second resolution
    come_back = timezone.now() + timedelta(minutes=10)
    receiver.script(Reply(429, {"Retry-After": email.utils.format_datetime(come_back, usegmt=True)}))
    delivery = resolved_callback(acme_key, receiver.url())

    attempt(delivery)

    assert delivery.status == Delivery.Status.PENDING
    assert abs(delivery.next_attempt_at - come_back) <= timedelta(seconds=2)


def test_429_asking_for_ten_days_is_capped_at_one_day(acme_key, receiver):
    # A receiver must not park a delivery beyond the retry window with one header.
    receiver.script(Reply(429, {"Retry-After": str(10 * 24 * 3600)}))
    delivery = resolved_callback(acme_key, receiver.url())

    before = timezone.now()
    attempt(delivery)

    assert delivery.status == Delivery.Status.PENDING
    assert delivery.next_attempt_at <= timezone.now() + timedelta(days=1)
    assert delivery.next_attempt_at >= before + timedelta(days=1) - timedelta(seconds=1)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_a_4xx_is_final_failed_at_once_audited_and_never_sent_again(acme_key, receiver, status):
    # given: the receiver refuses the message itself (410 Gone: "stop sending")
    receiver.script(Reply(status, body=b"no such hook"))
    delivery = resolved_callback(acme_key, receiver.url())

    # when
    attempt(delivery)

    # then
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error == f"receiver answered {status}"
    [logged] = attempts_of(delivery)
    assert (logged.ok, logged.status_code, logged.response_snippet) == (False, status, "no such hook")
    [failed] = audit_events(delivery.decision_id, "callback.failed")
    assert failed["reason"] == f"receiver answered {status}"
    assert failed["delivery_id"] == delivery.pk
    assert not audit_events(delivery.decision_id, "callback.delivered")

    # and however often a worker tries again, nothing more is sent
    make_due(delivery)
    attempt(delivery)
    assert len(receiver.requests) == 1
    assert delivery.status == Delivery.Status.FAILED
    assert len(attempts_of(delivery)) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_fails_naming_the_location(acme_key, receiver, status):
    # given: the receiver points elsewhere (which could be an address the SSRF check never saw)
    elsewhere = receiver.url("/elsewhere")
    receiver.script(Redirect(elsewhere, status=status))
    delivery = resolved_callback(acme_key, receiver.url("/hook"))

    # when
    attempt(delivery)

    # then: the target never hears from us
    assert receiver.paths() == ["/hook"]
    assert delivery.status == Delivery.Status.FAILED
    assert elsewhere in delivery.last_error
    assert "not followed" in delivery.last_error
    [logged] = attempts_of(delivery)
    assert (logged.ok, logged.status_code) == (False, status)
    [failed] = audit_events(delivery.decision_id, "callback.failed")
    assert elsewhere in failed["reason"]


# --- receivers that misbehave ---------------------------------------------------------------


def test_a_receiver_that_hangs_past_the_timeout_is_a_retryable_failure(acme_key, receiver, monkeypatch):
    # given: a receiver that says nothing for 30 s, and a timeout of half a second (15 s in
    # production) so the test does not wait for it
    monkeypatch.setattr(callbacks, "TIMEOUT", httpx.Timeout(0.5))
    receiver.script(Hang(30))
    delivery = resolved_callback(acme_key, receiver.url())

    # when
    attempt(delivery)

    # then: it reached the receiver, timed out, and will be tried again
    assert len(receiver.requests) == 1
    assert delivery.status == Delivery.Status.PENDING
    assert "Timeout" in delivery.last_error
    [logged] = attempts_of(delivery)
    assert (logged.ok, logged.status_code) == (False, None)
    assert "Timeout" in logged.error
    assert not audit_events(delivery.decision_id, "callback.failed")


def test_the_production_timeout_is_15_seconds():
    assert httpx.Timeout(15.0) == callbacks.TIMEOUT


@pytest.mark.django_db(transaction=True)
def test_a_hanging_receiver_does_not_hold_up_another_delivery(acme_key, receiver):
    # given: two resolved decisions; the first one's receiver will hang until released
    receiver.script(Hang(30), Reply(200, body=b"quick"))
    hanging = resolved_callback(acme_key, receiver.url("/slow"))
    quick = resolved_callback(acme_key, receiver.url("/fast"))

    def attempt_in_thread() -> None:
        try:
            delivery_attempt(delivery_id=hanging.pk)
        finally:
            connection.close()

    # when: a worker is stuck on the first ...
    worker = threading.Thread(target=attempt_in_thread, daemon=True)
    worker.start()
    try:
        wait_for(lambda: receiver.paths() == ["/slow"])

        # ... another worker delivers the second
        attempt(quick)

        # then: the second went out while the first is still waiting for its answer
        assert quick.status == Delivery.Status.SENT
        assert receiver.paths() == ["/slow", "/fast"]
        assert worker.is_alive()
        assert not DeliveryAttempt.objects.filter(delivery=hanging).exists()
    finally:
        receiver.release()
        worker.join(timeout=20)

    # and the first completes once its receiver answers
    assert not worker.is_alive()
    hanging.refresh_from_db()
    assert hanging.status == Delivery.Status.SENT


def test_a_receiver_answering_50_mb_costs_2_kb(acme_key, receiver):
    # given: a receiver that sends 50 MB back
    receiver.script(Huge(size=50 * 1024 * 1024))
    delivery = resolved_callback(acme_key, receiver.url())

    # when
    attempt(delivery)

    # then: a 200 is a 200; a snippet is kept ...
    assert delivery.status == Delivery.Status.SENT
    [logged] = attempts_of(delivery)
    assert (logged.ok, logged.status_code) == (True, 200)
    assert 0 < len(logged.response_snippet) <= callbacks.SNIPPET_BYTES
    assert set(logged.response_snippet) == {"x"}
    # ... and we hung up instead of reading the rest: the receiver could not send it all,
    # which is also why this test takes milliseconds, not the time to move 50 MB
    [served] = receiver.served
    wait_for(lambda: served.done)
    assert served.client_hung_up
    assert served.bytes_sent < 50 * 1024 * 1024


def test_a_receiver_that_closes_the_connection_is_retried_and_then_delivered(acme, acme_key, receiver):
    # given: the first connection is dropped without an answer; the retry gets the default 200
    receiver.script(Close())
    delivery = resolved_callback(acme_key, receiver.url())

    # when
    attempt(delivery)

    # then: a transient failure, with nothing received to report
    assert delivery.status == Delivery.Status.PENDING
    [dropped] = attempts_of(delivery)
    assert (dropped.ok, dropped.status_code, dropped.response_snippet) == (False, None, "")
    assert dropped.error
    assert not audit_events(delivery.decision_id, "callback.failed")

    # when: the retry comes due
    make_due(delivery)
    attempt(delivery)

    # then
    assert delivery.status == Delivery.Status.SENT
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    verify(second, secret_of(acme))


# --- the signing secret and its rotation ----------------------------------------------------


def test_webhook_secret_prints_the_same_whsec_secret_each_time(acme):
    first = webhook_secret("--org", "acme")
    second = webhook_secret("--org", "acme")

    assert first[-1].startswith("whsec_")
    assert first[-1] == second[-1]
    assert first[-1] == secret_of(acme)
    # the reference library accepts it as a key: 32 random bytes behind the prefix
    Webhook(first[-1])


def test_webhook_secret_for_an_unknown_organization_is_an_error(db):
    with pytest.raises(CommandError, match="nosuchorg"):
        webhook_secret("--org", "nosuchorg")


def test_webhook_secret_rotate_prints_a_new_current_secret(acme):
    old = webhook_secret("--org", "acme")[-1]

    new = webhook_secret("--org", "acme", "--rotate")[-1]

    assert new.startswith("whsec_")
    assert new != old
    assert webhook_secret("--org", "acme")[-1] == new


def test_during_a_rotation_callbacks_carry_both_signatures_and_verify_with_either_secret(
    acme, acme_key, receiver
):
    # given: Acme rotates; its receiver may still have the old secret for a day
    old = secret_of(acme)
    new = webhook_secret("--org", "acme", "--rotate")[-1]

    # when
    attempt(resolved_callback(acme_key, receiver.url()))

    # then: two signatures, space separated, and each secret alone verifies the callback
    [request] = receiver.requests
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(signature.startswith("v1,") for signature in signatures)
    assert verify(request, old)["type"] == "decision.resolved"
    assert verify(request, new)["type"] == "decision.resolved"


def test_after_the_rotation_overlap_only_the_new_secret_signs(acme, acme_key, receiver):
    # given: a rotation that happened longer ago than the overlap
    old = secret_of(acme)
    new = webhook_secret("--org", "acme", "--rotate")[-1]
    long_ago = timezone.now() - ROTATION_OVERLAP - timedelta(seconds=1)
    WebhookSecret.objects.filter(organization=acme, secret=old).update(retired_at=long_ago)

    # when
    attempt(resolved_callback(acme_key, receiver.url()))

    # then
    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    verify(request, new)
    with pytest.raises(WebhookVerificationError):
        verify(request, old)


# --- redelivery -----------------------------------------------------------------------------


def test_redeliver_after_success_sends_again_with_the_same_webhook_id(acme, acme_key, receiver):
    # given: a callback that went out fine, but the receiver lost it
    delivery = attempt(resolved_callback(acme_key, receiver.url()))
    assert delivery.status == Delivery.Status.SENT

    # when: an admin redelivers it
    delivery_redeliver(delivery=delivery, actor="admin:root")
    attempt(delivery)

    # then: the same message again, so a receiver that did keep it can tell
    assert delivery.status == Delivery.Status.SENT
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert verify(second, secret_of(acme)) == verify(first, secret_of(acme))
    [requested] = audit_events(delivery.decision_id, "callback.redelivery_requested")
    assert requested["previous_status"] == "sent"
    assert requested["delivery_id"] == delivery.pk
    assert len(audit_events(delivery.decision_id, "callback.delivered")) == 2
    # the attempt log keeps counting: a redelivery restarts the retry budget, not the history
    assert list(delivery.attempt_log.values_list("number", flat=True)) == [1, 2]


def test_redeliver_after_a_final_failure_tries_again(acme, acme_key, receiver):
    # given: the receiver said 410, then its owner fixed it
    receiver.script(Reply(410))
    delivery = attempt(resolved_callback(acme_key, receiver.url()))
    assert delivery.status == Delivery.Status.FAILED

    # when
    delivery_redeliver(delivery=delivery, actor="admin:root")
    attempt(delivery)

    # then
    assert delivery.status == Delivery.Status.SENT
    assert len(receiver.requests) == 2
    verify(receiver.requests[1], secret_of(acme))


def test_admin_lists_callback_deliveries_and_shows_every_attempt(acme_key, receiver, admin_client):
    # given: a callback that needed two attempts
    receiver.script(Reply(503, body=b"maintenance window"))
    delivery = attempt(resolved_callback(acme_key, receiver.url()))
    make_due(delivery)
    attempt(delivery)

    # when / then: the changelist ...
    listing = admin_client.get(reverse("admin:notifications_delivery_changelist"))
    assert listing.status_code == 200
    assert delivery.decision_id in listing.content.decode()

    # ... and the delivery's page with its attempt log
    page = admin_client.get(reverse("admin:notifications_delivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "maintenance window" in html
    assert "503" in html


def test_the_admin_redeliver_action_queues_the_delivery_again(acme, acme_key, receiver, admin_client):
    # given
    delivery = attempt(resolved_callback(acme_key, receiver.url()))

    # when: the admin picks it in the changelist and runs "redeliver"
    response = admin_client.post(
        reverse("admin:notifications_delivery_changelist"),
        {"action": "redeliver", "_selected_action": [str(delivery.pk)]},
    )

    # then
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.PENDING, 0)
    [requested] = audit_events(delivery.decision_id, "callback.redelivery_requested")
    assert requested["delivery_id"] == delivery.pk
    assert AuditEvent.objects.get(event="callback.redelivery_requested").actor == "admin:admin"

    # and the next attempt sends it again, same webhook-id
    attempt(delivery)
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    verify(second, secret_of(acme))
