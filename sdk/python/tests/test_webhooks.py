"""verify_webhook: a callback is believed only if signed with the organization's secret,
recently, over exactly the bytes received."""

import base64
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from countersign import WebhookVerificationError, verify_webhook
from fake_service import ALICE, WEBHOOK_SECRET
from standardwebhooks.webhooks import Webhook


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def approved_callback(client, service):
    """The callback for a refund alice approved: (decision id, body, headers)."""
    decision = client.create("Refund $80 to order #1234", approver=ALICE, metadata={"thread_id": "t-1"})
    service.answer(decision.id, "approved", note="ok")
    body, headers = service.signed_callback(decision.id)
    return decision.id, body, headers


def test_a_genuine_callback_gives_the_decision(approved_callback):
    decision_id, body, headers = approved_callback

    event = verify_webhook(body, headers, WEBHOOK_SECRET)

    assert event.type == "decision.resolved"
    assert event.id == headers["webhook-id"]
    assert event.decision.id == decision_id
    assert event.decision.status == "approved"
    assert event.decision.outcome.note == "ok"
    assert event.decision.metadata == {"thread_id": "t-1"}


def test_header_names_may_come_in_any_case(approved_callback):
    _, body, headers = approved_callback
    shouting = {name.title(): value for name, value in headers.items()}

    assert verify_webhook(body.decode(), shouting, WEBHOOK_SECRET).decision.status == "approved"


def test_during_a_rotation_either_secret_verifies(approved_callback):
    _, body, headers = approved_callback

    event = verify_webhook(body, headers, [new_secret(), WEBHOOK_SECRET])

    assert event.decision.status == "approved"


def test_another_secret_is_refused(approved_callback):
    _, body, headers = approved_callback

    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, new_secret())


def test_a_body_changed_in_transit_is_refused(approved_callback):
    _, body, headers = approved_callback
    forged = body.replace(b'"approved"', b'"denied"')

    with pytest.raises(WebhookVerificationError):
        verify_webhook(forged, headers, WEBHOOK_SECRET)


def test_an_old_callback_replayed_later_is_refused(approved_callback):
    _, body, headers = approved_callback
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    replayed = {
        **headers,
        "webhook-timestamp": str(int(an_hour_ago.timestamp())),
        "webhook-signature": Webhook(WEBHOOK_SECRET).sign(headers["webhook-id"], an_hour_ago, body.decode()),
    }

    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(body, replayed, WEBHOOK_SECRET)


@pytest.mark.parametrize(
    "tampering",
    [
        {"webhook-signature": "garbage"},
        {"webhook-signature": "v1,not base64!"},
        {"webhook-timestamp": "yesterday"},
        {"webhook-id": ""},
    ],
)
def test_malformed_headers_are_refused_not_crashed_on(approved_callback, tampering):
    _, body, headers = approved_callback

    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, {**headers, **tampering}, WEBHOOK_SECRET)


def test_a_signed_body_that_is_not_a_decision_event_is_refused():
    body = '{"hello": "world"}'
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(WEBHOOK_SECRET).sign("msg_1", now, body),
    }

    with pytest.raises(WebhookVerificationError, match="not a Countersign event"):
        verify_webhook(body, headers, WEBHOOK_SECRET)
