"""The service's database role cannot rewrite the audit trail: migrations run as the owner,
the service as a role with INSERT and SELECT only on the audit tables (broker/db_roles.py).
Played here as that role, over its own connection: what the app's credentials can do."""

import io

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from psycopg import errors

from audit.chain import link_hash
from audit.selectors import sealed_events
from broker.db_roles import runtime_role_grant
from decisions.models import Decision
from decisions.services import DecisionSpec, decision_answer, decision_create
from tests.conftest import ALICE
from tests.helpers import seal

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

APP_ROLE = "countersign_test_app"


@pytest.fixture
def as_app_role(acme):
    """A connection to the test database as a role granted what `migrate` grants the service."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DO $$ BEGIN CREATE ROLE {APP_ROLE} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
    runtime_role_grant(connection, APP_ROLE)
    params = connection.get_connection_params()
    app = psycopg.connect(
        host=params.get("host") or "127.0.0.1",
        port=params.get("port") or 5432,
        dbname=params["dbname"],
        user=APP_ROLE,
        autocommit=True,
    )
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def denied(acme_key):
    """A decision Alice denied, sealed."""
    decision, _ = decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(
            action="Wire $50 000 to a new supplier", stages=[{"approvers": [ALICE], "quorum": "any"}]
        ),
    )
    decision_answer(request_id=decision.requests.get().pk, choice="deny", via="email")
    seal()
    decision.refresh_from_db()
    return decision


# Each is refused with insufficient_privilege: "must be owner" for DDL, "permission denied" for rows.
ATTACKS = {
    "disable-all-triggers": "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
    "disable-the-guard": "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_no_update_delete",
    "drop-the-guard": "DROP TRIGGER audit_auditevent_no_update_delete ON audit_auditevent",
    "update-event": "UPDATE audit_auditevent SET actor = 'mallory@example.com'",
    "delete-last-event": "DELETE FROM audit_auditevent WHERE id = (SELECT max(id) FROM audit_auditevent)",
    "truncate": "TRUNCATE audit_auditevent CASCADE",
    "delete-links": "DELETE FROM audit_auditlink",
    "update-link": "UPDATE audit_auditlink SET hash = 'f'",
    "delete-checkpoints": "DELETE FROM audit_auditcheckpoint",
    "drop-table": "DROP TABLE audit_auditcheckpoint",
}


@pytest.mark.parametrize("statement", ATTACKS.values(), ids=ATTACKS.keys())
def test_the_app_role_cannot_alter_the_audit_tables(as_app_role, denied, statement):
    before = list(sealed_events().order_by("pk").values_list("pk", "actor", "hash"))

    with pytest.raises(errors.InsufficientPrivilege):
        as_app_role.execute(statement)

    assert list(sealed_events().order_by("pk").values_list("pk", "actor", "hash")) == before


def test_the_app_role_can_do_what_the_service_does(as_app_role, denied):
    # reads everything, writes decisions, appends audit events
    as_app_role.execute("UPDATE decisions_decision SET metadata = metadata WHERE id = %s", [denied.pk])
    (count,) = as_app_role.execute("SELECT count(*) FROM audit_auditevent").fetchone()
    assert count == sealed_events().count()
    as_app_role.execute(
        "INSERT INTO audit_auditevent"
        " (organization_id, created_at, event, actor, channel, payload, content_hash)"
        " VALUES (%s, now(), 'note.added', 'system', '', '{}', %s)",
        [denied.organization_id, "0" * 64],
    )


def test_what_the_app_role_can_append_to_turn_a_deny_into_an_approve_fails_verify_audit(
    as_app_role, denied, acme
):
    # given the app role, unable to change the deny, appends a forged approve after it, links it
    # into the chain itself and edits the decision row
    last = sealed_events().filter(organization=acme).order_by("-seq").first()
    (event_id,) = as_app_role.execute(
        "INSERT INTO audit_auditevent (organization_id, created_at, decision_id, event, actor, channel,"
        " payload, content_hash)"
        " VALUES (%s, now(), %s, 'decision.resolved', %s, 'email', %s, %s) RETURNING id",
        [acme.pk, denied.pk, ALICE, '{"status":"approved"}', "e" * 64],
    ).fetchone()
    as_app_role.execute(
        "INSERT INTO audit_auditlink (event_id, organization_id, seq, prev_hash, hash)"
        " VALUES (%s, %s, %s, %s, %s)",
        [
            event_id,
            acme.pk,
            last.seq + 1,
            last.hash,
            link_hash(prev_hash=last.hash, seq=last.seq + 1, content_hash="e" * 64),
        ],
    )
    Decision.objects.filter(pk=denied.pk).update(status="approved")

    # then verify_audit names Acme and the forged event
    err = io.StringIO()
    with pytest.raises(CommandError, match="NOT intact"):
        call_command("verify_audit", stdout=io.StringIO(), stderr=err)
    problems = err.getvalue()
    assert f"organization {acme.pk}, event #{last.seq + 1}: content does not match" in problems
    forged = last.seq + 1
    assert (
        f"organization {acme.pk}, event #{forged}: events #{forged}..#{forged} are covered by no signed"
        in problems
    )
