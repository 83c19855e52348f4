"""GET /audit/decisions.csv: one row per decision, for compliance staff: who was asked over
which channel and when, who answered what and when, how long it took, escalations, outcome."""

import csv
import io
from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from audit.export import BOM
from decisions.models import ApprovalRequest, Decision
from decisions.services import decision_answer
from decisions.services.tick import decision_tick
from organizations.services import api_key_create
from tests.conftest import ALICE, BOB, CAROL, client_for
from tests.factories import DecisionFactory


@pytest.fixture
def auditor(acme):
    return client_for(api_key_create(organization=acme, scopes=["audit"], name="compliance")[1])


def rows(response) -> list[dict]:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content).decode()
    assert body.startswith(BOM)
    return list(csv.DictReader(io.StringIO(body.removeprefix(BOM), newline="")))


def notified(decision, address, at):
    ApprovalRequest.objects.filter(decision=decision, address=address).update(notified_at=at)


def test_one_row_says_who_was_asked_who_answered_what_and_how_fast(acme_key, auditor):
    # given a decision put to alice and bob, bob notified at t0 and answering 90 s later
    decision = DecisionFactory(
        api_key=acme_key[0],
        stages=[{"approvers": [ALICE, BOB], "quorum": "any"}],
        metadata={"requested_by": "dana@example.com"},
    )
    t0 = timezone.now() - timedelta(minutes=5)
    notified(decision, ALICE, t0 + timedelta(seconds=2))
    notified(decision, BOB, t0)
    request = decision.requests.get(address=BOB)
    decision_answer(request_id=request.pk, choice="approve", note="fine, checked", via="email")
    Decision.objects.filter(pk=decision.pk).update(resolved_at=t0 + timedelta(seconds=90))

    (row,) = rows(auditor.get("/audit/decisions.csv"))

    assert row["decision_id"] == decision.pk
    assert row["action"] == "Refund order #1042"
    assert row["requested_by"] == "dana@example.com"
    assert ALICE in row["asked"]
    assert BOB in row["asked"]
    assert "(email, stage 1, notified " in row["asked"]
    assert row["first_asked_at"] == t0.astimezone(UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z"
    )
    assert (row["status"], row["answered_by"], row["via"], row["choice"], row["note"]) == (
        "approved",
        BOB,
        "email",
        "approve",
        "fine, checked",
    )
    assert row["time_to_answer_seconds"] == "90"
    assert row["escalations"] == "0"
    assert row["action_hash"] == decision.action_hash


def test_the_asking_key_is_the_requester_when_the_agent_names_none(acme_key, auditor):
    DecisionFactory(api_key=acme_key[0])

    (row,) = rows(auditor.get("/audit/decisions.csv"))

    assert row["requested_by"] == acme_key[0].actor
    assert (row["status"], row["answered_by"], row["time_to_answer_seconds"]) == ("pending", "", "")


def test_escalations_and_a_timeout_are_counted_but_no_time_to_answer(acme_key, auditor):
    decision = DecisionFactory(
        api_key=acme_key[0], timeout_minutes=10, escalation=[{"after_minutes": 1, "approvers": [CAROL]}]
    )
    notified(decision, ALICE, timezone.now())
    decision_tick(decision_id=decision.pk, now=timezone.now() + timedelta(minutes=2))  # carol is asked
    decision_tick(decision_id=decision.pk, now=timezone.now() + timedelta(minutes=11))  # time runs out

    (row,) = rows(auditor.get("/audit/decisions.csv"))

    assert row["escalations"] == "1"
    assert f"{CAROL} (email, escalation 1" in row["asked"]
    assert (row["status"], row["via"], row["answered_by"]) == ("expired", "timeout", "system")
    assert row["time_to_answer_seconds"] == ""


def test_rows_are_oldest_first_filtered_by_creation_time_and_only_the_keys_organization(
    acme_key, globex_key, auditor
):
    first = DecisionFactory(api_key=acme_key[0], action="First")
    second = DecisionFactory(api_key=acme_key[0], action="Second")
    DecisionFactory(api_key=globex_key[0], action="Globex's")
    Decision.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(days=2))

    everything = rows(auditor.get("/audit/decisions.csv"))
    recent = rows(
        auditor.get("/audit/decisions.csv", {"from": (timezone.now() - timedelta(days=1)).isoformat()})
    )

    assert [r["action"] for r in everything] == ["First", "Second"]
    assert [r["decision_id"] for r in recent] == [second.pk]


def test_cells_a_spreadsheet_would_run_are_neutralised(acme_key, auditor):
    DecisionFactory(api_key=acme_key[0], action='=HYPERLINK("http://evil.example","Click")')

    (row,) = rows(auditor.get("/audit/decisions.csv"))

    assert row["action"] == '\'=HYPERLINK("http://evil.example","Click")'


def test_it_needs_the_audit_scope_and_valid_filters(acme, auditor):
    agent = client_for(api_key_create(organization=acme, scopes=["decisions"], name="agent")[1])

    assert agent.get("/audit/decisions.csv").status_code == 403
    bad = auditor.get("/audit/decisions.csv", {"from": "2030-01-02", "to": "2030-01-01"})
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"] == {"from": ["Must not be after `to`."]}
    assert auditor.get("/audit/decisions.csv", {"colour": "red"}).status_code == 400


def test_many_decisions_stream_in_batches_each_once(acme_key, auditor, monkeypatch):
    monkeypatch.setattr("audit.decision_export.BATCH_SIZE", 3)
    made = [DecisionFactory(api_key=acme_key[0], action=f"Refund order #{n}").pk for n in range(8)]

    exported = [r["decision_id"] for r in rows(auditor.get("/audit/decisions.csv"))]

    assert sorted(exported) == sorted(made)
    assert len(exported) == len(set(exported)) == 8
