"""The audit trail: append-only in the database itself, hash-chained per organization, and
checked end to end by `manage.py verify_audit`.

Tampering is played the way a database owner could do it: lift the guard (drop the triggers),
then raw SQL. verify_audit must notice every such edit, removal or insertion.
"""

import io
import itertools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit.chain import GENESIS_HASH, event_hash
from audit.guard import guard_lifted
from audit.models import AuditEvent, ChainHead
from audit.services import audit_record
from decisions.models import Decision
from decisions.services import decision_answer, decision_cancel, decision_create
from tests.conftest import ALICE, BOB

REPO_ROOT = Path(__file__).resolve().parent.parent


# --- helpers ------------------------------------------------------------------------------


def ask(api_key, *, approvers=(ALICE,), quorum="any", action="Refund order #1042") -> Decision:
    decision, _ = decision_create(
        api_key=api_key,
        action=action,
        details={"amount": 120, "currency": "EUR"},
        stages=[{"approvers": list(approvers), "quorum": quorum}],
    )
    return decision


def approve(decision: Decision, address: str) -> Decision:
    request = decision.requests.get(address=address)
    return decision_answer(request_id=request.pk, choice="approve", via="email")


def chain(organization) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(organization=organization).order_by("seq"))


def verify_audit() -> str:
    """Run the command in-process; raises CommandError when the trail is not intact."""
    out = io.StringIO()
    call_command("verify_audit", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def verify_audit_fails() -> str:
    """Run the command, expect it to fail, and return the problems it lists."""
    err = io.StringIO()
    with pytest.raises(CommandError, match="NOT intact"):
        call_command("verify_audit", stdout=io.StringIO(), stderr=err)
    return err.getvalue()


def execute(sql: str, params=()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert_event(*, organization_id: int, seq: int, prev_hash: str, digest: str, created_at, **fields):
    """Raw INSERT into the audit table, as a tamperer with database access would."""
    values = {
        "organization_id": organization_id,
        "seq": seq,
        "created_at": connection.ops.adapt_datetimefield_value(created_at),
        "decision_id": fields.get("decision_id"),
        "event": fields.get("event", "decision.resolved"),
        "actor": fields.get("actor", ALICE),
        "channel": fields.get("channel", "email"),
        "payload": fields.get("payload", "{}"),
        "prev_hash": prev_hash,
        "hash": digest,
    }
    columns = ", ".join(values)
    placeholders = ", ".join(["%s"] * len(values))
    execute(f"INSERT INTO audit_auditevent ({columns}) VALUES ({placeholders})", list(values.values()))  # noqa: S608


@pytest.fixture
def trail(acme_key):
    """Acme's trail with a few events of every kind: created, asked, answered, resolved."""
    key = acme_key[0]
    first = ask(key, approvers=(ALICE, BOB))
    approve(first, ALICE)
    second = ask(key, action="Delete the staging cluster")
    decision_cancel(decision=second, actor=key.actor)
    events = chain(key.organization)
    assert len(events) >= 6  # enough rows to have a first, a middle and a last one
    return events


# --- append-only in the database ------------------------------------------------------------


def test_raw_update_of_an_audit_row_is_refused_by_the_database(trail):
    # given a recorded event
    event = trail[1]

    # when someone runs a raw UPDATE on it
    # (the savepoint keeps the test's transaction usable after the database error)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        execute("UPDATE audit_auditevent SET actor = %s WHERE id = %s", ["mallory@example.com", event.pk])

    # then the row is as it was
    event.refresh_from_db()
    assert event.actor == trail[1].actor
    assert event.hash == trail[1].hash


def test_raw_delete_of_an_audit_row_is_refused_by_the_database(trail):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        execute("DELETE FROM audit_auditevent WHERE id = %s", [trail[2].pk])

    assert AuditEvent.objects.filter(pk=trail[2].pk).exists()
    assert AuditEvent.objects.count() == len(trail)


def test_orm_update_and_delete_are_refused_too(trail):
    # The guard lives in the database, so the ORM is no way around it either.
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=trail[0].pk).update(payload='{"forged":true}')
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(organization_id=trail[0].organization_id).delete()
    with pytest.raises(DatabaseError), transaction.atomic():
        trail[-1].delete()

    assert [e.payload for e in chain(trail[0].organization_id)] == [e.payload for e in trail]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_truncate_of_the_audit_table_is_refused_on_postgresql(trail):
    # WHY transactional: inside the test's own transaction PostgreSQL would refuse TRUNCATE
    # anyway, for the deferred foreign-key checks still pending, and prove nothing.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        execute("TRUNCATE audit_auditevent")

    assert AuditEvent.objects.count() == len(trail)


def test_sqlite_guard_holds_even_when_the_suite_runs_on_postgresql(tmp_path):
    # WHY a subprocess: the suite may run on PostgreSQL, yet SQLite is the default an operator
    # gets with nothing configured, so its triggers must be proven on a real migrated file.
    database = tmp_path / "guard.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr

    db = sqlite3.connect(database)
    try:
        # given one organization and one audit row, inserted without the ORM
        db.execute(
            "INSERT INTO organizations_organization"
            " (id, slug, name, default_timeout_minutes, reminder_points, created_at)"
            " VALUES (1, 'acme', 'Acme Corp', 60, '[0.5, 0.9]', '2026-01-01 00:00:00')"
        )
        db.execute(
            "INSERT INTO audit_auditevent"
            " (id, organization_id, seq, created_at, decision_id, event, actor, channel, payload,"
            "  prev_hash, hash)"
            " VALUES (1, 1, 1, '2026-01-01 00:00:00', NULL, 'decision.created', 'api_key:cs_x', 'api',"
            "  '{}', ?, ?)",
            (GENESIS_HASH, "a" * 64),
        )
        db.commit()

        # when it is updated or deleted, then SQLite refuses, naming the reason
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit_auditevent SET actor = 'mallory' WHERE id = 1")
        db.rollback()
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM audit_auditevent WHERE id = 1")
        db.rollback()

        assert db.execute("SELECT actor FROM audit_auditevent").fetchall() == [("api_key:cs_x",)]
    finally:
        db.close()


# --- the chain --------------------------------------------------------------------------------


def test_events_of_one_organization_form_a_contiguous_hash_chain(acme, trail):
    assert [e.seq for e in trail] == list(range(1, len(trail) + 1))
    assert trail[0].prev_hash == GENESIS_HASH == "0" * 64
    for previous, event in itertools.pairwise(trail):
        assert event.prev_hash == previous.hash
    # each hash is the one anybody can recompute from the row's own content
    for event in trail:
        assert event.hash == event_hash(
            prev_hash=event.prev_hash,
            organization_id=event.organization_id,
            seq=event.seq,
            created_at=event.created_at,
            decision_id=event.decision_id,
            event=event.event,
            actor=event.actor,
            channel=event.channel,
            payload=event.payload,
        )

    head = ChainHead.objects.get(organization=acme)
    assert (head.seq, head.hash) == (trail[-1].seq, trail[-1].hash)


def test_two_organizations_have_independent_chains(acme, acme_key, globex, globex_key):
    # given decisions of Acme and Globex, interleaved in time
    ask(acme_key[0])
    ask(globex_key[0])
    ask(acme_key[0])
    ask(globex_key[0], approvers=(ALICE, BOB))

    for organization in (acme, globex):
        events = chain(organization)
        # then each starts at #1 from the genesis hash and links only to its own events
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[0].prev_hash == GENESIS_HASH
        for previous, event in itertools.pairwise(events):
            assert event.prev_hash == previous.hash
        head = ChainHead.objects.get(organization=organization)
        assert (head.seq, head.hash) == (events[-1].seq, events[-1].hash)
    # Globex asked two approvers on its second decision, so its chain is longer
    assert len(chain(globex)) == len(chain(acme)) + 1
    assert "intact" in verify_audit()


@pytest.mark.django_db(transaction=True)
def test_audit_record_outside_a_transaction_is_refused(acme):
    # WHY transactional: a plain db test runs inside a transaction, which would hide the check.
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit_record(organization_id=acme.pk, event="decision.created", actor="api_key:cs_x")

    assert not AuditEvent.objects.exists()
    assert not ChainHead.objects.exists()


# --- verify_audit -----------------------------------------------------------------------------


def test_verify_audit_passes_on_an_intact_chain(trail):
    output = verify_audit()

    assert "intact" in output
    assert f"{len(trail)} events" in output


@pytest.mark.parametrize(
    ("column", "forged"),
    [("payload", '{"action":"Refund order #1042","amount":1}'), ("actor", "mallory@example.com")],
)
def test_verify_audit_fails_after_a_row_is_edited(trail, column, forged):
    victim = trail[len(trail) // 2]
    with guard_lifted(connection):
        assert execute(f"UPDATE audit_auditevent SET {column} = %s WHERE id = %s", [forged, victim.pk]) == 1  # noqa: S608

    problems = verify_audit_fails()

    assert f"event #{victim.seq}" in problems
    assert "altered" in problems


def test_verify_audit_fails_after_a_row_is_edited_and_rehashed(trail):
    # A tamperer who knows the algorithm recomputes the edited row's hash: the next row's
    # prev_hash still points at the original, so the link breaks.
    victim = trail[2]
    payload = '{"forged":true}'
    digest = event_hash(
        prev_hash=victim.prev_hash,
        organization_id=victim.organization_id,
        seq=victim.seq,
        created_at=victim.created_at,
        decision_id=victim.decision_id,
        event=victim.event,
        actor=victim.actor,
        channel=victim.channel,
        payload=payload,
    )
    with guard_lifted(connection):
        execute(
            "UPDATE audit_auditevent SET payload = %s, hash = %s WHERE id = %s", [payload, digest, victim.pk]
        )

    problems = verify_audit_fails()

    assert f"event #{victim.seq + 1}: prev_hash does not match" in problems


def test_verify_audit_fails_after_a_middle_row_is_deleted(trail):
    victim = trail[len(trail) // 2]
    with guard_lifted(connection):
        assert execute("DELETE FROM audit_auditevent WHERE id = %s", [victim.pk]) == 1

    problems = verify_audit_fails()

    assert f"expected event #{victim.seq} here" in problems


def test_verify_audit_fails_after_the_last_row_is_deleted(trail):
    # Removing rows from the end leaves a chain that is internally consistent; only the chain
    # head, which is further along, gives it away.
    with guard_lifted(connection):
        assert execute("DELETE FROM audit_auditevent WHERE id = %s", [trail[-1].pk]) == 1

    problems = verify_audit_fails()

    assert "removed from the end" in problems


@pytest.mark.parametrize("hash_kind", ["forged", "recomputed"])
def test_verify_audit_fails_after_a_row_is_inserted(trail, hash_kind):
    # given an extra row appended by hand, linked to the real last event
    last = trail[-1]
    created_at = timezone.now()
    fields = {"decision_id": last.decision_id, "actor": BOB, "payload": '{"status":"approved"}'}
    digest = "f" * 64
    if hash_kind == "recomputed":
        # even a correct hash does not help: the chain head was not moved
        digest = event_hash(
            prev_hash=last.hash,
            organization_id=last.organization_id,
            seq=last.seq + 1,
            created_at=created_at,
            event="decision.resolved",
            channel="email",
            **fields,
        )
    insert_event(
        organization_id=last.organization_id,
        seq=last.seq + 1,
        prev_hash=last.hash,
        digest=digest,
        created_at=created_at,
        **fields,
    )

    problems = verify_audit_fails()

    assert f"event #{last.seq + 1}" in problems or f"chain ends at #{last.seq + 1}" in problems


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_verify_audit_exits_non_zero_as_a_real_process(acme_key):
    # WHY transactional: the subprocess has its own connection and sees only committed rows.
    key = acme_key[0]
    decision = ask(key, approvers=(ALICE, BOB))
    approve(decision, BOB)
    settings = connection.settings_dict
    credentials = quote(settings["USER"] or "", safe="")
    if settings["PASSWORD"]:
        credentials += ":" + quote(settings["PASSWORD"], safe="")
    url = (
        f"postgres://{credentials}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}"
        f"/{settings['NAME']}"
    )

    def run_verify_audit() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "verify_audit"],
            cwd=REPO_ROOT,
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # given the process passes on the intact trail (so a failure below is the tampering,
    # not a process that cannot reach the database)
    intact = run_verify_audit()
    assert intact.returncode == 0, intact.stderr
    assert f"intact: {AuditEvent.objects.count()} events" in intact.stdout

    # when one row is edited behind the application's back
    with guard_lifted(connection):
        execute(
            "UPDATE audit_auditevent SET actor = %s WHERE seq = 2 AND organization_id = %s",
            ["mallory@example.com", key.organization_id],
        )

    # then the process exits non-zero and says which row
    tampered = run_verify_audit()
    assert tampered.returncode != 0
    assert "NOT intact" in tampered.stderr
    assert "event #2" in tampered.stderr
