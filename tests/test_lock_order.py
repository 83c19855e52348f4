"""Lock order between an approver's answer and the worker that emailed them (PostgreSQL).

Inserting any row that references a decision (an audit event, a delivery) takes a KEY SHARE
lock on the decision. The worker that marks alice's email sent holds her request row and then
inserts an audit event; her click locks the decision and then updates her request. If the
click's lock were a plain FOR UPDATE, each would wait for the other: a deadlock, which the
benchmark hit. decision_answer takes FOR NO KEY UPDATE, which KEY SHARE does not wait for.
"""

import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from audit.services import audit_record
from decisions.models import ApprovalRequest, Decision
from decisions.services import DecisionSpec, decision_answer, decision_create
from tests.conftest import ALICE


def _waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def _wait_until_someone_waits_on_a_lock(timeout: float = 10.0) -> None:
    # Not tests.helpers.wait_for: that recycles connections, and we are inside a transaction.
    deadline = time.monotonic() + timeout
    while not _waiting_on_a_lock():
        assert time.monotonic() < deadline, "the click never queued behind the worker's lock"
        time.sleep(0.01)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_alice_answering_while_the_worker_marks_her_email_sent_does_not_deadlock(acme_key):
    decision, _ = decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(action="Refund $120", stages=[{"approvers": [ALICE], "quorum": "any"}]),
    )
    request = ApprovalRequest.objects.get(decision=decision)
    worker_holds_request = threading.Event()
    errors: list[BaseException] = []

    def alice_clicks():
        try:
            worker_holds_request.wait(10)
            decision_answer(request_id=request.pk, choice="approve", via="email")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    clicker = threading.Thread(target=alice_clicks)
    clicker.start()
    try:
        # given: the worker has marked alice notified (her request row is locked) ...
        with transaction.atomic():
            ApprovalRequest.objects.filter(pk=request.pk).update(notified_at=timezone.now())
            worker_holds_request.set()
            # ... and alice's click has locked the decision and queued behind that row
            _wait_until_someone_waits_on_a_lock()
            # when: the worker writes its audit event, which references the decision
            audit_record(
                organization_id=decision.organization_id,
                decision_id=decision.pk,
                event="notification.sent",
                actor="system",
            )
    finally:
        clicker.join(30)

    # then: neither was chosen as a deadlock victim, and alice's approval counted
    assert errors == []
    assert Decision.objects.get(pk=decision.pk).status == "approved"
