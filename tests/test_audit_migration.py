"""Migrating the first chains (one locked chain head per organization, 0001-0004) to sealed
links and signed checkpoints (0005-0007) loses nothing: every event keeps its place, a
`chain.migrated` event records the old head and what the old check found, and the result
verifies. Played on the real database: migrate back to 0004, write a trail the old way,
migrate forward."""

import importlib
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit.chain import GENESIS_HASH
from audit.models import AuditCheckpoint, AuditEvent
from audit.selectors import sealed_events

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("audit", "0004_compliance_group")]
legacy = importlib.import_module("audit.migrations.0006_convert_chains")


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def write_legacy_chain(apps, organization, events: int, *, break_at: int | None = None) -> tuple[int, str]:
    """A chain as 0001-0004 wrote it: hash over everything, place included, and a chain head."""
    AuditEvent_ = apps.get_model("audit", "AuditEvent")
    ChainHead = apps.get_model("audit", "ChainHead")
    prev, start = GENESIS_HASH, datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    for seq in range(1, events + 1):
        event = AuditEvent_(
            organization_id=organization.pk,
            seq=seq,
            created_at=start + timedelta(minutes=seq),
            event="note.added",
            actor="system",
            channel="",
            payload=json.dumps({"n": seq}, separators=(",", ":")),
            prev_hash=prev,
            hash="",
        )
        event.hash = legacy.legacy_event_hash(event, organization.pk)
        if seq == break_at:
            event.payload = '{"n":"edited after hashing"}'
        event.save()
        prev = event.hash
    ChainHead.objects.create(organization_id=organization.pk, seq=events, hash=prev)
    return events, prev


@pytest.fixture
def at_0004(acme, globex):
    apps = migrate(BEFORE)
    yield apps
    migrate(latest())  # whatever happened, the next test gets today's schema


def test_existing_chains_are_carried_over_whole_and_verify(at_0004, acme, globex):
    # given two organizations' chains written the old way
    acme_size, acme_head = write_legacy_chain(at_0004, acme, 5)
    globex_size, _ = write_legacy_chain(at_0004, globex, 3)

    # when the new migrations run
    migrate(latest())

    # then every event keeps its place, and one more records the migration
    for organization, size in ((acme, acme_size), (globex, globex_size)):
        chain = list(sealed_events().filter(organization=organization).order_by("seq"))
        assert [e.seq for e in chain] == list(range(1, size + 2))
        assert [json.loads(e.payload)["n"] for e in chain[:-1]] == list(range(1, size + 1))
        marker = chain[-1]
        assert marker.event == "chain.migrated"
        facts = json.loads(marker.payload)
        assert facts["legacy_size"] == size
        assert facts["legacy_problems"] == []
        newest = AuditCheckpoint.objects.filter(organization=organization).latest("size")
        assert (newest.size, newest.head_hash) == (size + 1, marker.hash)
    assert (
        json.loads(sealed_events().get(organization=acme, event="chain.migrated").payload)["legacy_head_hash"]
        == acme_head
    )
    out = io.StringIO()
    call_command("verify_audit", stdout=out, stderr=io.StringIO())
    assert f"intact: {acme_size + globex_size + 2} sealed events" in out.getvalue()


def test_a_chain_already_broken_stays_visibly_broken(at_0004, acme):
    write_legacy_chain(at_0004, acme, 4, break_at=2)

    migrate(latest())

    marker = sealed_events().get(organization=acme, event="chain.migrated")
    assert json.loads(marker.payload)["legacy_problems"] == ["event #2: did not match its old hash"]
    assert AuditEvent.objects.filter(organization=acme).count() == 5


def test_new_events_after_the_migration_are_sealed_after_the_migrated_ones(at_0004, acme_key):
    from decisions.services import DecisionSpec, decision_create
    from tests.helpers import seal

    write_legacy_chain(at_0004, acme_key[0].organization, 2)
    migrate(latest())

    decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(
            action="Refund order #1042", stages=[{"approvers": ["a@example.com"], "quorum": "any"}]
        ),
    )
    seal()

    chain = list(sealed_events().filter(organization=acme_key[0].organization).order_by("seq"))
    assert [e.event for e in chain[:3]] == ["note.added", "note.added", "chain.migrated"]
    assert chain[3].event == "decision.created"
    assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
