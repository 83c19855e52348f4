"""PostgreSQL going away in the middle of a request: POST /decisions, or an approver's confirm.
The agent gets a clear 503 it can retry, the approver a page saying her answer was not
recorded with a button that sends it again, and nothing half-made is left behind.

The request's own database connection is terminated (pg_terminate_backend, from a second
connection) while its transaction is open, just before a chosen statement: as a database
restart, a failover or an idle-connection killer would do it. Only that one backend, of this
test's own database, is ever terminated.
"""

import io
import re
from contextlib import contextmanager

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from audit.models import AuditEvent
from decisions.links import link_token
from decisions.models import ApprovalRequest, Decision, Status
from decisions.services import DecisionSpec, decision_create
from notifications.models import Delivery
from tests.conftest import ALICE, BOB, client_for
from tests.helpers import keep_published_deliveries

pytestmark = pytest.mark.postgres

REFUND = {
    "action": "Refund order #1042 for $120",
    "details": {"amount": 120},
    "approvers": [ALICE, BOB],
    "timeout_minutes": 30,
}


def terminate_backend(pid: int) -> None:
    """Terminate one backend of this test's database, from a connection of our own, and wait
    (up to 10 s) until it is gone."""
    db = connection.settings_dict
    with psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        autocommit=True,
    ) as killer:
        rows = killer.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid = %s AND pid <> pg_backend_pid()",
            [pid],
        ).fetchall()
    assert rows == [(True,)], f"backend {pid} of this test's database was not terminated"


@contextmanager
def connection_dies_before(statement: str):
    """The first time this thread's connection is about to run SQL starting with `statement`
    inside a transaction, its backend is terminated, so that statement fails. Yields the pids
    terminated (one, if the statement was reached)."""
    killed: list[int] = []

    def wrapper(execute, sql, params, many, context):
        if not killed and sql.startswith(statement):
            assert context["connection"].in_atomic_block, "it must die inside the transaction"
            pid = context["connection"].connection.info.backend_pid
            terminate_backend(pid)
            killed.append(pid)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield killed


@pytest.fixture
def published(monkeypatch) -> list[int]:
    """Delivery tasks the API hands to the broker; kept here, not sent to a shared broker."""
    return keep_published_deliveries(monkeypatch)


@pytest.fixture
def agent(transactional_db, acme_key):
    # transactional_db: the request runs in a transaction of its own, as in production, not
    # inside the test's (whose connection is the one that dies).
    agent = client_for(acme_key[1])
    agent.raise_request_exception = False  # a server error is an answer here, as a real agent gets it
    return agent


@pytest.mark.parametrize(
    "statement",
    [
        # The decision row is written; its approval requests are next.
        'INSERT INTO "decisions_approvalrequest"',
        # Decision and approval requests are written; their outbox rows are next.
        'INSERT INTO "notifications_delivery"',
        # Everything is written but the audit events, the last rows of the transaction.
        'INSERT INTO "audit_auditevent"',
    ],
    ids=["before-requests", "before-outbox", "before-audit"],
)
def test_the_database_lost_mid_request_is_a_503_and_leaves_no_partial_decision(agent, published, statement):
    # given: an earlier decision, so Acme has an audit trail the failed request must not add to
    earlier = agent.post("/decisions", {**REFUND, "action": "Refund order #1041"}, format="json")
    assert earlier.status_code == 201, earlier.content
    published.clear()
    audit_before = list(AuditEvent.objects.order_by("pk").values_list("pk", "content_hash"))

    # when
    with connection_dies_before(statement) as killed:
        response = agent.post("/decisions", REFUND, format="json", HTTP_IDEMPOTENCY_KEY="refund-1042")

    # then: a clear, retryable answer in the contract's error shape
    assert killed, "the statement was never reached: the test did not test anything"
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert error["message"]
    assert error["fields"] == {}
    assert int(response["Retry-After"]) > 0

    # and nothing of it was stored, nor announced
    assert list(Decision.objects.values_list("pk", flat=True)) == [earlier.json()["id"]]
    assert not ApprovalRequest.objects.exclude(decision_id=earlier.json()["id"]).exists()
    assert not Delivery.objects.exclude(decision_id=earlier.json()["id"]).exists()
    assert list(AuditEvent.objects.order_by("pk").values_list("pk", "content_hash")) == audit_before
    assert audit_before
    assert published == []
    call_command("verify_audit", stdout=io.StringIO())

    # when: the agent retries with the same Idempotency-Key, the database being back
    retry = agent.post("/decisions", REFUND, format="json", HTTP_IDEMPOTENCY_KEY="refund-1042")

    # then: the failed request did not use the key up: a new decision, complete
    assert retry.status_code == 201, retry.content
    decision = Decision.objects.get(pk=retry.json()["id"])
    assert sorted(decision.requests.values_list("address", flat=True)) == [ALICE, BOB]
    assert sorted(published) == sorted(
        Delivery.objects.filter(decision=decision).values_list("pk", flat=True)
    )
    assert len(published) == 2
    call_command("verify_audit", stdout=io.StringIO())


# --- the approver's confirm ------------------------------------------------------------------


REFUND_FIELDS = {"action": "Refund order #1042 for $120", "details": {"amount": 120}, "timeout_minutes": 30}


@pytest.fixture
def alice_link(transactional_db, acme_key, published) -> tuple[Decision, str]:
    """Acme's agent asked alice (and bob) to sign off a refund: the decision and the path of
    alice's Approve link, as her email carries it."""
    decision, created = decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(stages=[{"approvers": [ALICE, BOB], "quorum": "any"}], **REFUND_FIELDS),
    )
    assert created
    return decision, f"/a/{link_token(decision.requests.get(address=ALICE), 'approve')}"


def resend_form(page: str) -> dict[str, str]:
    """The fields the page's "Try again" form would send."""
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))


@pytest.mark.parametrize(
    "statement",
    [
        # Her request is marked answered; the decision row (approved: quorum "any") is next.
        'UPDATE "decisions_decision"',
        # Her answer and the decision's outcome are written; the audit events are next.
        'INSERT INTO "audit_auditevent"',
    ],
    ids=["before-decision", "before-audit"],
)
def test_a_confirm_the_database_loses_is_a_503_page_that_sends_it_again(alice_link, statement):
    decision, approve = alice_link
    alice = Client(HTTP_USER_AGENT="Mozilla/5.0")
    alice.raise_request_exception = False
    audit_before = list(AuditEvent.objects.order_by("pk").values_list("pk", "content_hash"))

    # when: the database goes away while her answer is being written
    with connection_dies_before(statement) as killed:
        response = alice.post(approve, {"confirm": "yes", "note": "Approved <b>once</b>"})

    # then: a page, not a 500, says her answer was not recorded, and offers to send it again
    assert killed, "the statement was never reached: the test did not test anything"
    assert response.status_code == 503, response.content[:500]
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) > 0
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    assert "Your answer was not recorded" in page
    assert "try again" in page.lower()
    assert resend_form(page) == {"confirm": "yes", "note": "Approved &lt;b&gt;once&lt;/b&gt;"}

    # and nothing of it was written
    alice_request = decision.requests.get(address=ALICE)
    assert alice_request.state == ApprovalRequest.State.PENDING
    decision.refresh_from_db()
    assert decision.status == Status.PENDING
    assert list(AuditEvent.objects.order_by("pk").values_list("pk", "content_hash")) == audit_before
    call_command("verify_audit", stdout=io.StringIO())

    # when: she presses "Try again"
    again = alice.post(approve, {"confirm": "yes", "note": "Approved <b>once</b>"})

    # then: her answer is recorded, once
    assert again.status_code == 200, again.content[:500]
    alice_request.refresh_from_db()
    assert alice_request.state == ApprovalRequest.State.ANSWERED
    assert alice_request.note == "Approved <b>once</b>"
    decision.refresh_from_db()
    assert decision.status == Status.APPROVED
    call_command("verify_audit", stdout=io.StringIO())
