"""POST /decisions: what Acme's agent sends is stored, echoed back, routed to the right people
and audited; Idempotency-Key makes a retried request safe."""

import hashlib
import json
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from decisions.models import ApprovalRequest, ApproverGroup, Decision, Policy
from notifications.models import Delivery
from tests.conftest import ALICE, BOB, CAROL

REFUND = {"action": "Refund order #1042", "approver": ALICE}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def expected_action_hash(action: str, details: dict) -> str:
    # Computed here from the contract's definition, not with the app's own helper.
    canonical = json.dumps(
        {"action": action, "details": details}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_minimal_request_gets_the_contract_defaults(api):
    response = api.post("/decisions", REFUND, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("dec_")
    assert body["status"] == "pending"
    assert body["action"] == "Refund order #1042"
    assert body["context"] == ""
    assert body["details"] == {}
    assert body["options"] == ["approve", "deny"]
    assert body["urgency"] == "normal"
    assert body["response"] == "choice"
    assert body["allow_edit"] is False
    assert body["on_timeout"] == "expire"
    assert body["escalation"] == []
    assert body["metadata"] == {}
    assert body["callback_url"] is None
    assert body["outcome"] is None
    assert body["response_notes"] is None
    assert body["resolved_at"] is None
    # The organization's default timeout is 60 minutes.
    assert when(body["expires_at"]) - when(body["created_at"]) == timedelta(minutes=60)


def test_every_contract_field_is_stored_and_echoed(api, settings):
    settings.CALLBACK_ALLOW_PRIVATE = True
    request = {
        "action": "Wire 12 500 EUR to Initech",
        "context": "Quarterly invoice INV-7; the vendor changed banks last week.",
        "details": {"amount": 12500, "currency": "EUR", "vendor": "Initech"},
        "approvers": [ALICE, BOB],
        "quorum": "all",
        "options": ["approve", "deny", "ask finance"],
        "response": "choice",
        "allow_edit": True,
        "urgency": "high",
        "timeout_minutes": 45,
        "on_timeout": "deny",
        "escalation": [{"after_minutes": 15, "approvers": [CAROL]}],
        "callback_url": "http://127.0.0.1:9000/hooks/countersign",
        "metadata": {"thread_id": "t-17", "interrupt_id": "i-3"},
    }

    response = api.post("/decisions", request, format="json")

    assert response.status_code == 201
    body = response.json()
    for field in ("action", "context", "details", "options", "response", "allow_edit", "urgency"):
        assert body[field] == request[field], field
    assert body["on_timeout"] == "deny"
    assert body["callback_url"] == request["callback_url"]
    assert body["metadata"] == request["metadata"]
    assert body["stages"] == [{"approvers": [ALICE, BOB], "quorum": "all"}]
    assert body["escalation"] == [{"after_minutes": 15.0, "approvers": [CAROL]}]
    assert when(body["expires_at"]) - when(body["created_at"]) == timedelta(minutes=45)

    stored = Decision.objects.get(pk=body["id"])
    assert stored.organization.slug == "acme"
    assert stored.action == request["action"]
    assert stored.context == request["context"]
    assert stored.details == request["details"]
    assert stored.options == request["options"]
    assert stored.response_type == "choice"
    assert stored.allow_edit is True
    assert stored.urgency == "high"
    assert stored.on_timeout == "deny"
    assert stored.callback_url == request["callback_url"]
    assert stored.metadata == request["metadata"]
    assert stored.escalation == [{"after_minutes": 15, "approvers": [CAROL]}]


def test_text_response_is_stored(api):
    """A clarification question: the approver answers in words, there are no buttons."""
    response = api.post(
        "/decisions",
        {**REFUND, "action": "Which warehouse ships order #1042?", "response": "text"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["response"] == "text"
    assert Decision.objects.get().response_type == "text"


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [(0.5, timedelta(seconds=30)), (1.25, timedelta(seconds=75)), (90, timedelta(minutes=90))],
    ids=["half-minute", "one-and-a-quarter", "whole"],
)
def test_timeout_minutes_may_be_fractional(api, minutes, expected):
    response = api.post("/decisions", {**REFUND, "timeout_minutes": minutes}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert when(body["expires_at"]) - when(body["created_at"]) == expected


def test_without_timeout_the_organizations_own_default_applies(acme, api):
    acme.default_timeout_minutes = 15
    acme.save(update_fields=["default_timeout_minutes"])

    body = api.post("/decisions", REFUND, format="json").json()

    assert when(body["expires_at"]) - when(body["created_at"]) == timedelta(minutes=15)


def test_single_approver_is_one_stage_asking_one_person(api):
    body = api.post("/decisions", REFUND, format="json").json()

    assert body["stages"] == [{"approvers": [ALICE], "quorum": "any"}]
    assert [(r["address"], r["channel"], r["stage"], r["level"]) for r in body["requests"]] == [
        (ALICE, "email", 0, 0)
    ]


def test_approvers_are_all_asked_at_once_with_their_channel(api):
    body = api.post(
        "/decisions",
        {"action": "Deploy release 4.2", "approvers": [ALICE, "slack:U123ABC"], "quorum": 2},
        format="json",
    ).json()

    assert body["stages"] == [{"approvers": [ALICE, "slack:U123ABC"], "quorum": 2}]
    requests = body["requests"]
    assert [(r["address"], r["channel"]) for r in requests] == [(ALICE, "email"), ("slack:U123ABC", "slack")]
    for request in requests:
        assert request["stage"] == 0
        assert request["level"] == 0
        assert request["state"] == "pending"
        assert request["group"] is None
        assert request["asked_at"] is not None
        assert request["notified_at"] is None  # nothing is sent before the transaction commits
        assert request["answered_at"] is None
        assert request["choice"] is None


def test_email_approvers_are_lowercased(api):
    body = api.post("/decisions", {**REFUND, "approver": "Alice@Example.COM"}, format="json").json()

    assert [r["address"] for r in body["requests"]] == [ALICE]


def test_stages_ask_only_the_first_stage_now(api):
    """Manager, then director: bob is asked only after alice approved."""
    stages = [{"approvers": [ALICE], "quorum": "any"}, {"approvers": [BOB, CAROL], "quorum": "all"}]

    response = api.post("/decisions", {"action": "Hire a contractor", "stages": stages}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["stages"] == stages
    assert body["current_stage"] == 0
    assert [(r["address"], r["stage"]) for r in body["requests"]] == [(ALICE, 0)]


def test_stage_quorum_defaults_to_any(api):
    body = api.post(
        "/decisions", {"action": "Hire a contractor", "stages": [{"approvers": [ALICE, BOB]}]}, format="json"
    ).json()

    assert body["stages"] == [{"approvers": [ALICE, BOB], "quorum": "any"}]


def test_group_is_expanded_to_its_members(acme, api):
    ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, "slack:U0BOB42"])

    response = api.post("/decisions", {**REFUND, "approver": "group:finance"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["stages"] == [{"approvers": ["group:finance"], "quorum": "any"}]
    assert [(r["address"], r["channel"], r["group"]) for r in body["requests"]] == [
        (ALICE, "email", "finance"),
        ("slack:U0BOB42", "slack", "finance"),
    ]


def test_group_and_named_approver_asked_once_each(acme, api):
    """alice is named and also in the group: she gets one request, not two."""
    ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB])

    body = api.post(
        "/decisions", {"action": "Refund order #1042", "approvers": [ALICE, "group:finance"]}, format="json"
    ).json()

    assert sorted(r["address"] for r in body["requests"]) == [ALICE, BOB]


def test_group_quorum_counts_members(acme, api):
    ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB])

    response = api.post(
        "/decisions", {"action": "Pay invoice", "approvers": ["group:finance"], "quorum": 2}, format="json"
    )

    assert response.status_code == 201
    assert len(response.json()["requests"]) == 2


def test_another_organizations_group_is_not_used(globex, api):
    ApproverGroup.objects.create(organization=globex, name="finance", members=[ALICE])

    response = api.post("/decisions", {**REFUND, "approver": "group:finance"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"approvers": ["unknown group 'finance'"]}
    assert Decision.objects.count() == 0


def test_handover_style_request_works_unchanged(api, settings):
    """The Handover's clients send exactly these fields; they only change the base URL."""
    settings.CALLBACK_ALLOW_PRIVATE = True
    handover = {
        "action": "Send the renewal offer to Globex",
        "context": "Customer asked for a 10% discount.",
        "approver": ALICE,
        "urgency": "high",
        "timeout_minutes": 30,
        "callback_url": "http://127.0.0.1:8080/handover/callback",
    }

    response = api.post("/decisions", handover, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    assert body["action"] == handover["action"]
    assert body["context"] == handover["context"]
    assert body["urgency"] == "high"
    assert body["callback_url"] == handover["callback_url"]
    assert body["response_notes"] is None  # the field Handover clients read the note from
    assert when(body["expires_at"]) - when(body["created_at"]) == timedelta(minutes=30)
    assert [r["address"] for r in body["requests"]] == [ALICE]


def test_loopback_callback_is_refused_unless_the_operator_allows_it(api, settings):
    settings.CALLBACK_ALLOW_PRIVATE = False

    response = api.post(
        "/decisions", {**REFUND, "callback_url": "http://127.0.0.1:8080/handover/callback"}, format="json"
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "callback_url" in error["fields"]
    assert Decision.objects.count() == 0


def test_action_hash_is_sha256_of_canonical_action_and_details(api):
    details = {
        "customer": "Zürich Bäckerei",
        "amount": 49.5,
        "items": ["€ voucher", 2],
        "nested": {"b": 1, "a": 2},
    }

    body = api.post("/decisions", {**REFUND, "details": details}, format="json").json()

    assert body["action_hash"] == expected_action_hash("Refund order #1042", details)
    assert Decision.objects.get().action_hash == body["action_hash"]


@pytest.mark.parametrize(
    "details",
    [{"amount": 1e16}, {"amount": -0.0}, {"amount": 2.5e20}, {"amount": 1.0, "rate": 1e-05}],
    ids=["1e16", "negative-zero", "2.5e20", "small-floats"],
)
def test_action_hash_can_be_recomputed_from_the_returned_details(api, details):
    """Anyone holding the decision object must be able to check action_hash against the details
    it shows, whatever the database does to how numbers are written."""
    created = api.post("/decisions", {**REFUND, "details": details}, format="json").json()

    fetched = api.get(f"/decisions/{created['id']}").json()

    assert fetched["action_hash"] == expected_action_hash(fetched["action"], fetched["details"])
    assert fetched["details"] == details


def test_action_hash_without_details_covers_an_empty_object(api):
    body = api.post("/decisions", REFUND, format="json").json()

    assert body["action_hash"] == expected_action_hash("Refund order #1042", {})


def test_metadata_is_echoed_untouched(api):
    metadata = {
        "thread_id": "3f2b8c1e-langgraph",
        "interrupt": {"id": "i-9", "ns": ["graph", "approve_refund:7"]},
        "attempt": 2,
        "ratio": 0.25,
        "flags": [True, False, None],
        "note": "ünïcödé ✓",
        "empty": {},
    }

    created = api.post("/decisions", {**REFUND, "metadata": metadata}, format="json").json()
    fetched = api.get(f"/decisions/{created['id']}").json()

    assert created["metadata"] == metadata
    assert fetched["metadata"] == metadata


def test_created_decision_is_audited(api, acme_key):
    body = api.post(
        "/decisions", {"action": "Refund order #1042", "approvers": [ALICE, "slack:U123ABC"]}, format="json"
    ).json()

    events = list(AuditEvent.objects.filter(decision_id=body["id"]).order_by("pk"))
    assert [e.event for e in events] == ["decision.created", "approver.asked", "approver.asked"]
    created = events[0]
    assert created.actor == f"api_key:{acme_key[0].prefix}"
    assert created.channel == "api"
    assert json.loads(created.payload)["action_hash"] == body["action_hash"]
    asked = {json.loads(e.payload)["address"]: e.channel for e in events[1:]}
    assert asked == {ALICE: "email", "slack:U123ABC": "slack"}


def test_each_request_gets_an_outbox_delivery(api):
    body = api.post(
        "/decisions", {"action": "Deploy", "approvers": [ALICE, BOB, "slack:U123ABC"]}, format="json"
    ).json()

    deliveries = Delivery.objects.filter(decision_id=body["id"])
    assert sorted((d.request.address, d.kind, d.purpose) for d in deliveries) == [
        (ALICE, "email", "ask"),
        (BOB, "email", "ask"),
        ("slack:U123ABC", "slack", "ask"),
    ]


# --- Idempotency-Key ----------------------------------------------------------------------


def test_same_idempotency_key_and_body_returns_the_first_decision(api):
    """The agent's HTTP client retried after a timeout: no second decision, no second email."""
    first = api.post("/decisions", REFUND, format="json", headers={"Idempotency-Key": "refund-1042"})
    again = api.post("/decisions", REFUND, format="json", headers={"Idempotency-Key": "refund-1042"})

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Decision.objects.count() == 1
    assert ApprovalRequest.objects.count() == 1
    assert AuditEvent.objects.filter(event="decision.created").count() == 1


def test_same_body_with_keys_in_another_order_is_the_same_request(api):
    key = {"Idempotency-Key": "refund-1042"}
    first = api.generic(
        "POST",
        "/decisions",
        b'{"action": "Refund", "approver": "alice@example.com"}',
        content_type="application/json",
        headers=key,
    )
    again = api.generic(
        "POST",
        "/decisions",
        b'{"approver":"alice@example.com","action":"Refund"}',
        content_type="application/json",
        headers=key,
    )

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_same_idempotency_key_with_another_body_is_a_conflict(api):
    api.post("/decisions", REFUND, format="json", headers={"Idempotency-Key": "refund-1042"})

    response = api.post(
        "/decisions",
        {**REFUND, "action": "Refund order #1043"},
        format="json",
        headers={"Idempotency-Key": "refund-1042"},
    )

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert error["message"]
    assert Decision.objects.count() == 1
    assert Decision.objects.get().action == "Refund order #1042"


def test_idempotency_keys_are_per_organization(api, globex_api):
    """Globex happening to use the same key must neither see nor block Acme's decision."""
    acme = api.post("/decisions", REFUND, format="json", headers={"Idempotency-Key": "order-1"})
    globex = globex_api.post("/decisions", REFUND, format="json", headers={"Idempotency-Key": "order-1"})

    assert (acme.status_code, globex.status_code) == (201, 201)
    assert acme.json()["id"] != globex.json()["id"]
    assert Decision.objects.count() == 2


def test_without_idempotency_key_each_request_is_new(api):
    first = api.post("/decisions", REFUND, format="json")
    second = api.post("/decisions", REFUND, format="json")

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


# Keys in an order PostgreSQL's jsonb does not keep, and a number it writes out in full.
UNORDERED = {"vendor": "Initech", "amount": 1e16, "a": {"zz": 1, "b": [2, {"yy": 3, "c": 4}]}}


def _reads_of(table: str, statements: list[str]) -> list[str]:
    return [sql for sql in statements if sql.startswith("SELECT") and f'"{table}"' in sql]


def _create_sql(api, request) -> tuple:
    with CaptureQueriesContext(connection) as captured:
        response = api.post("/decisions", request, format="json")
    return response, [query["sql"] for query in captured.captured_queries]


def test_the_create_response_reads_byte_for_byte_as_a_later_get(api):
    # The response is built from what the create holds, not read back: it must still show the
    # JSON as stored, exactly as every later read will.
    request = {**REFUND, "details": UNORDERED, "metadata": {"run": "r", "id": 7}}
    created, statements = _create_sql(api, request)

    assert created.status_code == 201
    assert created.content == api.get(f"/decisions/{created.json()['id']}").content
    assert not _reads_of("decisions_decision", statements)
    assert not [
        sql for sql in statements if sql.startswith("SELECT") and '"decisions_approvalrequest"' in sql
    ]


def test_a_decision_a_policy_settles_reads_byte_for_byte_as_a_later_get(api, acme):
    Policy.objects.create(
        organization=acme,
        name="small-refunds",
        conditions=[{"field": "details.vendor", "op": "eq", "value": "Initech"}],
        action=Policy.Action.APPROVE,
    )

    created, statements = _create_sql(api, {**REFUND, "details": UNORDERED})

    assert created.json()["status"] == "approved"
    assert created.content == api.get(f"/decisions/{created.json()['id']}").content
    assert not _reads_of("decisions_decision", statements)


def test_a_create_for_one_approver_takes_at_most_seven_statements(api):
    # Issue 14: the key's lookup, the transaction, and one INSERT each for the decision, its
    # request, the delivery and the audit events. Counted, never timed. The first create of
    # the process also reads the policy rules and Slack settings, and marks the key used.
    api.post("/decisions", REFUND, format="json")

    response, statements = _create_sql(api, REFUND)

    assert response.status_code == 201
    assert len(statements) <= 7, "\n".join(statements)
