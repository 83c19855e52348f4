"""The audit trail: append-only in the database itself, sealed into a hash chain per
organization after commit, signed in checkpoints, and checked end to end by `verify_audit`.

Tampering is played the way a database owner could do it: lift the guard (drop the triggers),
then raw SQL, up to rewriting a whole chain consistently with the published algorithm.
verify_audit must notice every such edit, removal, reordering or insertion, and name the
organization and the first bad event. (What the service's own role can do: test_db_roles.py.)
"""

import io
import itertools
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import factory
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from audit import signing
from audit.chain import GENESIS_HASH, content_hash, link_hash
from audit.checkpoints import checkpoints_publish
from audit.guard import TABLES, guard_lifted
from audit.models import AuditCheckpoint, AuditEvent, AuditLink
from audit.sealing import audit_seal
from audit.selectors import sealed_events
from audit.services import audit_record
from decisions.models import Decision
from decisions.services import decision_answer, decision_cancel
from tests.conftest import ALICE, BOB
from tests.factories import DecisionFactory
from tests.helpers import race, seal

REPO_ROOT = Path(__file__).resolve().parent.parent

# Sealing only links other transactions' events (audit/sealing.py), so every test here commits.
pytestmark = pytest.mark.django_db(transaction=True)


# --- helpers ------------------------------------------------------------------------------


class Refund(DecisionFactory):
    details = factory.Dict({"amount": 120, "currency": "EUR"})


def approve(decision: Decision, address: str) -> Decision:
    request = decision.requests.get(address=address)
    return decision_answer(request_id=request.pk, choice="approve", via="email")


def chain(organization) -> list[AuditEvent]:
    """The organization's sealed events in chain order, with seq, prev_hash and hash."""
    return list(sealed_events().filter(organization=organization).order_by("seq"))


def verify_audit() -> str:
    """Run the command in-process; raises CommandError when the trail is not intact."""
    out = io.StringIO()
    call_command("verify_audit", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def verify_audit_fails(*args) -> str:
    """Run the command, expect it to fail, and return the problems it lists."""
    err = io.StringIO()
    with pytest.raises(CommandError, match="NOT intact"):
        call_command("verify_audit", *args, stdout=io.StringIO(), stderr=err)
    return err.getvalue()


def execute(sql: str, params=()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@pytest.fixture
def trail(acme_key):
    """Acme's sealed trail with events of every kind: created, asked, answered, resolved.
    Sealed after each step, as beat's sealer would (each second), so each step has its own
    signed checkpoint, also written to a directory outside the database."""
    key = acme_key[0]
    first = Refund(api_key=key, approvers=(ALICE, BOB))
    seal()
    approve(first, ALICE)
    seal()
    second = Refund(api_key=key, action="Delete the staging cluster")
    seal()
    decision_cancel(decision=second, actor=key.actor)
    seal()
    checkpoints_publish()
    events = chain(key.organization)
    assert len(events) >= 6  # enough rows to have a first, a middle and a last one
    return events


@pytest.fixture
def outside(trail, tmp_path) -> str:
    """The directory the storage sink wrote Acme's checkpoints to: what a database
    administrator cannot reach (in production a bucket or another machine)."""
    folder = tmp_path / "checkpoints"  # where conftest points the storage sink
    assert len(list(folder.rglob("*.json"))) == AuditCheckpoint.objects.count() >= 4
    return str(folder)


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
    assert event.content_hash == trail[1].content_hash


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


UPDATES = {
    "audit_auditlink": "UPDATE audit_auditlink SET seq = seq + 1000",
    "audit_auditseal": "UPDATE audit_auditseal SET events = 0",
    "audit_auditcheckpoint": "UPDATE audit_auditcheckpoint SET head_hash = 'f'",
}


@pytest.mark.parametrize("table", list(UPDATES))
def test_links_seals_and_checkpoints_are_append_only_too(trail, table):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        execute(UPDATES[table])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        execute(f"DELETE FROM {table}")  # noqa: S608


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_truncate_of_the_audit_table_is_refused_on_postgresql(trail):
    # WHY transactional: inside the test's own transaction PostgreSQL would refuse TRUNCATE
    # anyway, for the deferred foreign-key checks still pending, and prove nothing.
    for table in TABLES:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            execute(f"TRUNCATE {table} CASCADE")

    assert AuditEvent.objects.count() == len(trail)
    assert AuditLink.objects.count() == len(trail)


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
            " (id, organization_id, created_at, decision_id, event, actor, channel, payload, content_hash)"
            " VALUES (1, 1, '2026-01-01 00:00:00', NULL, 'decision.created', 'api_key:cs_x', 'api',"
            "  '{}', ?)",
            ("a" * 64,),
        )
        db.execute(
            "INSERT INTO audit_auditlink (event_id, organization_id, seq, prev_hash, hash)"
            " VALUES (1, 1, 1, ?, ?)",
            (GENESIS_HASH, "b" * 64),
        )
        db.commit()

        # when it is updated or deleted, then SQLite refuses, naming the reason
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit_auditevent SET actor = 'mallory' WHERE id = 1")
        db.rollback()
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM audit_auditevent WHERE id = 1")
        db.rollback()
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit_auditlink SET seq = 2")
        db.rollback()

        assert db.execute("SELECT actor FROM audit_auditevent").fetchall() == [("api_key:cs_x",)]
    finally:
        db.close()


# --- sealing ------------------------------------------------------------------------------------


def test_sealed_events_form_a_contiguous_hash_chain_anybody_can_recompute(acme, trail):
    assert [e.seq for e in trail] == list(range(1, len(trail) + 1))
    assert trail[0].prev_hash == GENESIS_HASH == "0" * 64
    for previous, event in itertools.pairwise(trail):
        assert event.prev_hash == previous.hash
    for event in trail:
        digest = content_hash(
            organization_id=event.organization_id,
            created_at=event.created_at,
            decision_id=event.decision_id,
            event=event.event,
            actor=event.actor,
            channel=event.channel,
            payload=event.payload,
        )
        assert event.content_hash == digest
        assert event.hash == link_hash(prev_hash=event.prev_hash, seq=event.seq, content_hash=digest)
    # and the newest checkpoint signs the head
    newest = AuditCheckpoint.objects.filter(organization=acme).order_by("-size").first()
    assert (newest.size, newest.head_hash) == (trail[-1].seq, trail[-1].hash)
    assert signing.signature_valid(
        body=newest.body, signature=newest.signature, public_key=signing.public_key_text()
    )


def test_two_organizations_have_independent_chains(acme, acme_key, globex, globex_key):
    # given decisions of Acme and Globex, interleaved in time
    Refund(api_key=acme_key[0])
    Refund(api_key=globex_key[0])
    Refund(api_key=acme_key[0])
    Refund(api_key=globex_key[0], approvers=(ALICE, BOB))
    seal()

    for organization in (acme, globex):
        events = chain(organization)
        # then each starts at #1 from the genesis hash and links only to its own events
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[0].prev_hash == GENESIS_HASH
        for previous, event in itertools.pairwise(events):
            assert event.prev_hash == previous.hash
        newest = AuditCheckpoint.objects.filter(organization=organization).order_by("-size").first()
        assert (newest.size, newest.head_hash) == (events[-1].seq, events[-1].hash)
    # Globex asked two approvers on its second decision, so its chain is longer
    assert len(chain(globex)) == len(chain(acme)) + 1
    assert "intact" in verify_audit()


def test_audit_record_outside_a_transaction_is_refused(acme):
    # WHY transactional (the whole module is): a plain db test runs inside a transaction,
    # which would hide the check.
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit_record(organization_id=acme.pk, event="decision.created", actor="api_key:cs_x")

    assert not AuditEvent.objects.exists()


@pytest.mark.postgres
def test_an_event_committed_late_is_sealed_after_the_ones_that_committed_before_it(acme):
    # given a writer whose transaction stays open after it wrote (the lower event id) ...
    wrote, release = threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                audit_record(organization_id=acme.pk, event="slow", actor="system")
                wrote.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert wrote.wait(timeout=30)
    # ... and a writer after it that commits first
    with transaction.atomic():
        audit_record(organization_id=acme.pk, event="fast", actor="system")

    # when the sealer runs while the slow transaction is open, then it seals nothing: the
    # slow event could still take a place before the fast one
    audit_seal()
    assert not AuditLink.objects.exists()

    # when the slow writer commits, then both are sealed, in the order they were written
    release.set()
    writer.join(timeout=30)
    seal()
    assert [(e.event, e.seq) for e in chain(acme)] == [("slow", 1), ("fast", 2)]
    assert "intact" in verify_audit()


@pytest.mark.postgres
def test_a_second_sealer_while_one_runs_does_nothing_and_nothing_is_linked_twice(acme_key):
    # given events to seal, and a sealer holding the lock (its transaction still open)
    for n in range(5):
        Refund(api_key=acme_key[0], action=f"Refund order #{n}")
    with transaction.atomic():
        first = audit_seal()

        # when a second sealer runs meanwhile (its own connection, as another worker's)
        (second,) = race(audit_seal)

    # then it found the lock taken and did nothing; the first linked every event once
    assert (first.events, first.locked_out) == (AuditEvent.objects.count(), False)
    assert (second.events, second.locked_out) == (0, True)
    seal()
    events = chain(acme_key[0].organization)
    assert [e.seq for e in events] == list(range(1, AuditEvent.objects.count() + 1))
    assert "intact" in verify_audit()


def test_a_seal_run_cut_short_is_finished_by_the_next(acme_key):
    for n in range(3):
        Refund(api_key=acme_key[0], action=f"Refund order #{n}")
    total = AuditEvent.objects.count()

    assert audit_seal(limit=2).events == 2
    seal()

    assert [e.seq for e in chain(acme_key[0].organization)] == list(range(1, total + 1))


# --- verify_audit: edits any chain check catches ------------------------------------------------


def test_verify_audit_passes_on_an_intact_trail(trail, outside):
    output = verify_audit()
    assert "intact" in output
    assert f"{len(trail)} sealed events" in output

    assert "intact" in verify_audit_with(outside)


def verify_audit_with(folder: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", "--checkpoints", folder, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.parametrize(
    ("column", "forged"),
    [("payload", '{"action":"Refund order #1042","amount":1}'), ("actor", "mallory@example.com")],
)
def test_verify_audit_fails_after_an_event_is_edited(acme, trail, column, forged):
    victim = trail[len(trail) // 2]
    with guard_lifted(connection):
        assert execute(f"UPDATE audit_auditevent SET {column} = %s WHERE id = %s", [forged, victim.pk]) == 1  # noqa: S608

    problems = verify_audit_fails()

    assert f"organization {acme.pk}, event #{victim.seq}: content does not match" in problems


def test_verify_audit_fails_after_a_middle_event_is_deleted(acme, trail):
    victim = trail[len(trail) // 2]
    with guard_lifted(connection):
        execute("DELETE FROM audit_auditlink WHERE event_id = %s", [victim.pk])
        execute("DELETE FROM audit_auditevent WHERE id = %s", [victim.pk])

    problems = verify_audit_fails()

    assert f"organization {acme.pk}, event #{victim.seq + 1}: expected event #{victim.seq} here" in problems


def test_verify_audit_fails_after_an_edited_decision_row(acme, trail):
    # given a decision approved and sealed, then its row edited behind the application's back
    decision = Decision.objects.get(status="approved")
    resolved = next(e for e in trail if e.decision_id == decision.pk and e.event == "decision.resolved")
    Decision.objects.filter(pk=decision.pk).update(
        status="denied", outcome={**decision.outcome, "choice": "deny"}
    )

    problems = verify_audit_fails()

    assert (
        f"organization {acme.pk}, event #{resolved.seq}: decision {decision.pk}: the table says denied"
        in problems
    )


def test_verify_audit_fails_after_a_decisions_details_are_edited(acme, trail):
    decision = Decision.objects.get(status="approved")
    created = next(e for e in trail if e.decision_id == decision.pk and e.event == "decision.created")
    Decision.objects.filter(pk=decision.pk).update(details={"amount": 12000, "currency": "EUR"})

    problems = verify_audit_fails()

    assert (
        f"organization {acme.pk}, event #{created.seq}: decision {decision.pk}: its details differ"
        in problems
    )


# --- verify_audit: a superuser who rewrites a whole chain consistently --------------------------


def rechain(organization_id: int) -> None:
    """What a superuser who knows the published algorithm does after editing events: recompute
    every content hash and link, so the chain is consistent from end to end."""
    prev = GENESIS_HASH
    for event in sealed_events().filter(organization_id=organization_id).order_by("seq"):
        digest = content_hash(
            organization_id=organization_id,
            created_at=event.created_at,
            decision_id=event.decision_id,
            event=event.event,
            actor=event.actor,
            channel=event.channel,
            payload=event.payload,
        )
        current = link_hash(prev_hash=prev, seq=event.seq, content_hash=digest)
        execute("UPDATE audit_auditevent SET content_hash = %s WHERE id = %s", [digest, event.pk])
        execute(
            "UPDATE audit_auditlink SET prev_hash = %s, hash = %s WHERE event_id = %s",
            [prev, current, event.pk],
        )
        prev = current


def forget_checkpoints(organization_id: int, *, above: int = 0) -> None:
    """The database's checkpoints disagree with a rewritten chain: the superuser removes them
    (they cannot sign new ones: the key is not in the database)."""
    execute(
        "DELETE FROM audit_auditcheckpoint WHERE organization_id = %s AND size > %s", [organization_id, above]
    )


def test_deny_turned_into_approve_with_every_hash_recomputed_fails_against_checkpoints(
    acme, acme_key, trail, outside
):
    # given a decision Alice denied, sealed like everything else
    denied = Refund(api_key=acme_key[0], action="Wire $50 000 to a new supplier")
    seal()
    request = denied.requests.get(address=ALICE)
    decision_answer(request_id=request.pk, choice="deny", via="email")
    seal()
    checkpoints_publish()
    events = [
        e
        for e in chain(acme)
        if e.decision_id == denied.pk and e.event in ("decision.answered", "decision.resolved")
    ]
    answered = events[0]

    # when a superuser turns the deny into an approve everywhere: the events, the decision row,
    # every hash after them; and removes the checkpoints that now disagree
    with guard_lifted(connection):
        for event in events:
            forged = event.payload.replace('"deny"', '"approve"').replace('"denied"', '"approved"')
            execute("UPDATE audit_auditevent SET payload = %s WHERE id = %s", [forged, event.pk])
        rechain(acme.pk)
        forget_checkpoints(acme.pk, above=answered.seq - 1)
    denied.refresh_from_db()
    Decision.objects.filter(pk=denied.pk).update(
        status="approved", outcome={**denied.outcome, "choice": "approve"}
    )

    # then the database alone shows events no signed checkpoint covers ...
    problems = verify_audit_fails()
    assert f"organization {acme.pk}, event #{answered.seq}: events #{answered.seq}..#" in problems
    assert "covered by no signed checkpoint" in problems
    # ... and the checkpoints kept outside name the first bad event
    problems = verify_audit_fails("--checkpoints", outside)
    assert f"organization {acme.pk}, event #{answered.seq}:" in problems
    assert "disagree with the checkpoint" in problems


def test_truncation_with_the_checkpoints_removed_fails_against_checkpoints_outside(acme, trail, outside):
    # given the chain cut back to an earlier checkpoint, the events and checkpoints after it removed
    sizes = sorted(AuditCheckpoint.objects.filter(organization=acme).values_list("size", flat=True))
    kept = sizes[-2]
    with guard_lifted(connection):
        for victim in trail[kept:]:
            execute("DELETE FROM audit_auditlink WHERE event_id = %s", [victim.pk])
            execute("DELETE FROM audit_auditevent WHERE id = %s", [victim.pk])
        forget_checkpoints(acme.pk, above=kept)

    problems = verify_audit_fails("--checkpoints", outside)

    assert f"organization {acme.pk}, event #{kept + 1}: the chain ends at #{kept}" in problems
    assert f"says it has {len(trail)} events" in problems


def test_a_whole_trail_truncated_fails_against_checkpoints_outside(acme, trail, outside):
    with guard_lifted(connection):
        for table in ("audit_auditlink", "audit_auditcheckpoint", "audit_auditseal", "audit_auditevent"):
            execute(f"DELETE FROM {table}")  # noqa: S608

    problems = verify_audit_fails("--checkpoints", outside)

    assert f"organization {acme.pk}, event #1: the chain ends at #0" in problems


def test_reordered_events_with_every_hash_recomputed_fail_against_checkpoints(acme, trail, outside):
    # given two events swapped in the chain, then the chain recomputed and checkpoints removed
    first, second = trail[1], trail[2]
    with guard_lifted(connection):
        execute("UPDATE audit_auditlink SET seq = 999999 WHERE event_id = %s", [first.pk])
        execute("UPDATE audit_auditlink SET seq = %s WHERE event_id = %s", [first.seq, second.pk])
        execute("UPDATE audit_auditlink SET seq = %s WHERE event_id = %s", [second.seq, first.pk])
        rechain(acme.pk)
        forget_checkpoints(acme.pk, above=0)

    problems = verify_audit_fails("--checkpoints", outside)

    assert f"organization {acme.pk}, event #1: events #1..#" in problems
    assert "disagree with the checkpoint" in problems


def test_a_forged_checkpoint_is_refused(acme, trail):
    # given a rewritten chain and a checkpoint for it that the tamperer signed with a key of their own
    from audit.checkpoints import checkpoint_fields

    with guard_lifted(connection):
        execute("UPDATE audit_auditevent SET actor = 'mallory@example.com' WHERE id = %s", [trail[0].pk])
        rechain(acme.pk)
        forget_checkpoints(acme.pk)
    head = chain(acme)[-1]
    settings_key = signing.new_private_key_text()
    with override_settings(AUDIT_SIGNING_KEY=settings_key):
        forged = checkpoint_fields(
            organization_id=acme.pk, size=head.seq, head_hash=head.hash, at=timezone.now()
        )
    AuditCheckpoint.objects.create(**forged)

    problems = verify_audit_fails()

    assert (
        f"organization {acme.pk}, event #{head.seq}: checkpoint in the database: "
        "its signature does not verify" in problems
    )


@pytest.mark.postgres
def test_verify_audit_exits_non_zero_as_a_real_process(acme, acme_key):
    # WHY a process: operators and cron run it so, and its exit status is the contract.
    key = acme_key[0]
    decision = Refund(api_key=key, approvers=(ALICE, BOB))
    approve(decision, BOB)
    seal()
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
            env={**os.environ, "DATABASE_URL": url, "AUDIT_SIGNING_KEY": django_settings.AUDIT_SIGNING_KEY},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # given the process passes on the intact trail (so a failure below is the tampering,
    # not a process that cannot reach the database)
    intact = run_verify_audit()
    assert intact.returncode == 0, intact.stderr
    assert f"intact: {AuditEvent.objects.count()} sealed events" in intact.stdout

    # when one event is edited behind the application's back
    second = chain(acme)[1]
    with guard_lifted(connection):
        execute("UPDATE audit_auditevent SET actor = %s WHERE id = %s", ["mallory@example.com", second.pk])

    # then the process exits non-zero and says which event of which organization
    tampered = run_verify_audit()
    assert tampered.returncode != 0
    assert "NOT intact" in tampered.stderr
    assert f"organization {acme.pk}, event #2" in tampered.stderr
