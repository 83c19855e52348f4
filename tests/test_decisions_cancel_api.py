"""POST /decisions/{id}/cancel: Acme's agent no longer needs the answer. Only a pending
decision can be cancelled; it resolves once, and the approvers are no longer waited for."""

import json
from datetime import datetime

import pytest

from audit.models import AuditEvent
from decisions.models import ApprovalRequest, Decision
from decisions.services import decision_answer
from notifications.models import Delivery
from tests.conftest import ALICE, BOB


@pytest.fixture
def pending(api) -> str:
    """A refund alice and bob were asked about, not answered yet."""
    response = api.post(
        "/decisions", {"action": "Refund order #1042", "approvers": [ALICE, BOB]}, format="json"
    )
    assert response.status_code == 201
    return response.json()["id"]


def resolved_events(decision_id: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(decision_id=decision_id, event="decision.resolved"))


def test_cancel_resolves_a_pending_decision(api, acme_key, pending):
    response = api.post(f"/decisions/{pending}/cancel")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == pending
    assert body["status"] == "cancelled"
    assert body["resolved_at"] is not None
    outcome = body["outcome"]
    assert outcome["status"] == "cancelled"
    assert outcome["by"] == f"api_key:{acme_key[0].prefix}"
    assert outcome["via"] == "api"
    assert outcome["choice"] is None
    assert outcome["note"] is None
    assert outcome["details"] == {}
    assert outcome["action_hash"] == body["action_hash"]
    assert datetime.fromisoformat(outcome["at"]) == datetime.fromisoformat(body["resolved_at"])


def test_cancel_is_stored(api, pending):
    api.post(f"/decisions/{pending}/cancel")

    decision = Decision.objects.get(pk=pending)
    assert decision.status == "cancelled"
    assert decision.resolved_at is not None
    assert decision.outcome["status"] == "cancelled"
    assert api.get(f"/decisions/{pending}").json()["status"] == "cancelled"


def test_cancel_closes_the_unanswered_requests(api, pending):
    """alice and bob are no longer waited for; their links then show the decision as closed."""
    body = api.post(f"/decisions/{pending}/cancel").json()

    assert [(r["address"], r["state"]) for r in body["requests"]] == [(ALICE, "closed"), (BOB, "closed")]
    assert set(ApprovalRequest.objects.filter(decision_id=pending).values_list("state", flat=True)) == {
        "closed"
    }


def test_cancel_is_audited(api, acme_key, pending):
    api.post(f"/decisions/{pending}/cancel")

    [event] = resolved_events(pending)
    assert event.actor == f"api_key:{acme_key[0].prefix}"
    assert event.channel == "api"
    assert json.loads(event.payload)["status"] == "cancelled"


def test_cancel_without_callback_url_sends_no_callback(api, pending):
    api.post(f"/decisions/{pending}/cancel")

    assert not Delivery.objects.filter(decision_id=pending, kind="callback").exists()


def test_cancel_with_callback_url_queues_the_outcome_callback(api, settings):
    settings.CALLBACK_ALLOW_PRIVATE = True
    decision_id = api.post(
        "/decisions",
        {"action": "Refund order #1042", "approver": ALICE, "callback_url": "http://127.0.0.1:9000/hook"},
        format="json",
    ).json()["id"]

    api.post(f"/decisions/{decision_id}/cancel")

    [callback] = Delivery.objects.filter(decision_id=decision_id, kind="callback")
    assert callback.purpose == "outcome"


def test_cancelling_twice_is_a_conflict_and_changes_nothing(api, pending):
    first = api.post(f"/decisions/{pending}/cancel").json()

    response = api.post(f"/decisions/{pending}/cancel")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "already_resolved"
    assert set(error) == {"code", "message", "fields"}
    assert api.get(f"/decisions/{pending}").json() == first
    assert len(resolved_events(pending)) == 1


def test_cancelling_an_answered_decision_is_a_conflict(api, pending):
    """alice already denied it: the agent cannot turn her answer into a cancellation."""
    request = ApprovalRequest.objects.get(decision_id=pending, address=ALICE)
    decision_answer(request_id=request.pk, choice="deny", via="web")

    response = api.post(f"/decisions/{pending}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_resolved"
    assert Decision.objects.get(pk=pending).status == "denied"
    assert [e.actor for e in resolved_events(pending)] == [ALICE]


def test_another_organization_cannot_cancel(globex_api, pending):
    response = globex_api.post(f"/decisions/{pending}/cancel")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Decision.objects.get(pk=pending).status == "pending"
    assert resolved_events(pending) == []


def test_cancel_unknown_decision_is_404(api):
    response = api.post("/decisions/dec_" + "0" * 26 + "/cancel")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_on_cancel_are_405_json(api, pending, method):
    response = getattr(api, method)(f"/decisions/{pending}/cancel")

    assert response.status_code == 405
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed"
    assert set(error) == {"code", "message", "fields"}
    assert "POST" in response["Allow"]
    assert Decision.objects.get(pk=pending).status == "pending"


def test_cancel_ignores_a_body(api, pending):
    """Cancel takes no input; a stray JSON body does not make it fail."""
    response = api.post(f"/decisions/{pending}/cancel", {"reason": "no longer needed"}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
