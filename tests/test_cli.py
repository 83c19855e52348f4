"""The `countersign` command, run as the real program (the SDK's entry point) against a live
Countersign, as a deploy script or a CI job runs it: its exit code is the gate (0 approved,
1 denied, 2 expired or cancelled, 3 error), its stdout the outcome, its stderr quiet when
piped and a progress line on a terminal.

Named actors: Acme's deploy pipeline asks; alice approves or denies.
"""

import csv
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from broker.asgi import application
from decisions.models import Decision
from decisions.services import decision_expire
from organizations.services import api_key_create
from tests.conftest import ALICE
from tests.helpers import seal, wait_for
from tests.live import clicks, newest_decision, serving

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

COUNTERSIGN = str(Path(sys.executable).with_name("countersign"))


@pytest.fixture
def service(settings, monkeypatch):
    monkeypatch.setattr("notifications.services._publish", lambda delivery_ids: None)
    with serving(application) as url:
        settings.PUBLIC_BASE_URL = url
        yield url


@pytest.fixture
def env(service, acme_key) -> dict:
    """The pipeline's environment: where Countersign is and its API key."""
    return {**os.environ, "COUNTERSIGN_URL": service, "COUNTERSIGN_API_KEY": acme_key[1]}


def start(env: dict, *args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([COUNTERSIGN, *args], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)


def countersign(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([COUNTERSIGN, *args], env=env, capture_output=True, text=True, timeout=60)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


DEPLOY = ["ask", "Deploy v1.2 to prod", "--approver", ALICE, "--detail", "version=1.2"]


# --- ask: the gate ----------------------------------------------------------------------------


def test_ask_waits_for_alice_and_exits_0_when_she_approves(env):
    process = start(env, *DEPLOY, "--detail", "replicas:=3", "--timeout", "30m", "--context", "Release train")
    decision = newest_decision("Deploy v1.2")
    clicks(ALICE, decision.id, "approve", note="ship it")

    code, out, err = finish(process)

    assert code == 0
    assert out == f"{decision.id} approved by {ALICE} via email (note: ship it)\n"
    assert err == ""  # piped: no progress
    decision.refresh_from_db()
    assert decision.details == {"version": "1.2", "replicas": 3}
    assert decision.context == "Release train"
    assert decision.expires_at - decision.created_at == timedelta(minutes=30)


def test_ask_exits_1_when_alice_denies_and_prints_the_decision_as_json(env):
    process = start(env, *DEPLOY, "--json")
    decision = newest_decision("Deploy v1.2")
    clicks(ALICE, decision.id, "deny", note="freeze until Monday")

    code, out, _ = finish(process)

    assert code == 1
    printed = json.loads(out)
    assert printed["id"] == decision.id
    assert printed["status"] == "denied"
    assert printed["outcome"]["note"] == "freeze until Monday"


def test_ask_exits_2_when_the_request_expires_or_is_cancelled(env):
    expiring = start(env, *DEPLOY)
    decision = newest_decision("Deploy v1.2")
    time_runs_out(decision.id)
    assert finish(expiring)[:2] == (2, f"{decision.id} expired: nobody answered in time\n")

    cancelled = start(env, "ask", "Drop the staging database", "--approver", ALICE)
    decision = newest_decision("Drop the staging")
    by_hand = countersign(env, "cancel", decision.id)
    assert by_hand.returncode == 0
    code, out, _ = finish(cancelled)
    assert code == 2
    assert out == by_hand.stdout == f"{decision.id} cancelled by api_key:{decision_key_prefix(env)} via api\n"


def time_runs_out(decision_id: str) -> None:
    """The decision's deadline passes and the clock expires it (no beat runs here)."""
    Decision.objects.filter(pk=decision_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    decision_expire(decision_id=decision_id)


def decision_key_prefix(env: dict) -> str:
    return env["COUNTERSIGN_API_KEY"][:11]


def test_a_cancelled_ci_job_withdraws_its_request(env):
    """CI cancels a job with SIGTERM: nobody is left approving a deploy that will not run."""
    process = start(env, *DEPLOY)
    decision = newest_decision("Deploy v1.2")
    wait_for(lambda: decision.requests.exists())

    process.send_signal(signal.SIGTERM)
    code, out, _ = finish(process)

    assert code == 2
    assert out.startswith(f"{decision.id} cancelled by api_key:")
    decision.refresh_from_db()
    assert decision.status == "cancelled"


def test_a_job_cancelled_while_its_request_is_being_made_withdraws_it_too(env):
    """SIGTERM lands after the service stored the decision but before the answer with its id
    reached the job: the job still withdraws it, rather than leave it pending for nobody."""
    with transaction.atomic(), connection.cursor() as cursor:
        # The decision's INSERT waits on this lock: the request is under way, unanswered.
        cursor.execute(f"LOCK TABLE {Decision._meta.db_table} IN EXCLUSIVE MODE")
        process = start(env, *DEPLOY)
        deadline = time.monotonic() + 15
        while not lock_waiters(cursor):
            assert time.monotonic() < deadline, "the request never reached the database"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
    code, out, _ = finish(process)

    decision = Decision.objects.get(action="Deploy v1.2 to prod")
    assert code == 2
    assert out.startswith(f"{decision.id} cancelled by api_key:")
    assert decision.status == "cancelled"


def lock_waiters(cursor) -> int:
    cursor.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return cursor.fetchone()[0]


def test_the_same_idempotency_key_waits_for_the_same_decision(env):
    first = start(env, *DEPLOY, "--idempotency-key", "pipeline-4711-deploy")
    decision = newest_decision("Deploy v1.2")
    first.kill()  # the runner died mid-wait; the job is retried
    first.communicate(timeout=10)

    retried = start(env, *DEPLOY, "--idempotency-key", "pipeline-4711-deploy")
    time.sleep(1)  # it is waiting on alice's answer, not asking again
    clicks(ALICE, decision.id, "approve")

    assert finish(retried)[0] == 0
    assert Decision.objects.filter(action="Deploy v1.2 to prod").count() == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["ask", "Pay", "--approver", "not an address"], "approvers"),
        (["ask", "Pay", "--approver", ALICE, "--timeout", "soon"], "not a duration"),
        (["ask", "Pay", "--approver", ALICE, "--detail", "amount"], "key=value"),
        (["get", "dec_nosuchthing"], "404 not_found"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_errors_exit_3_with_the_reason_on_stderr(env, args, says):
    result = countersign(env, *args)

    assert result.returncode == 3
    assert says in result.stderr
    assert result.stdout == ""


def test_a_bad_key_or_no_service_exits_3(env, service):
    assert "401" in countersign({**env, "COUNTERSIGN_API_KEY": "cs_wrong"}, *DEPLOY).stderr
    unreachable = countersign({**env, "COUNTERSIGN_URL": "http://127.0.0.1:9"}, *DEPLOY)
    assert unreachable.returncode == 3
    assert "127.0.0.1:9" in unreachable.stderr or "ConnectError" in unreachable.stderr


def test_on_a_terminal_it_shows_who_was_asked_and_the_time_left(env):
    controller, terminal = pty.openpty()
    try:
        process = start(env, *DEPLOY, "--timeout", "30m", stderr=terminal)
        decision = newest_decision("Deploy v1.2")
        shown = read_until(controller, "left")
        clicks(ALICE, decision.id, "approve")
        code, out, _ = finish(process)
    finally:
        os.close(terminal)
        os.close(controller)

    assert code == 0
    assert f"Asked {ALICE} (email) to sign off on 'Deploy v1.2 to prod' ({decision.id})." in shown
    assert f"Waiting for {ALICE} (email) · 29:" in shown  # the time left, counting down
    assert out == f"{decision.id} approved by {ALICE} via email\n"  # stdout is the same as piped


def read_until(fd: int, text: str, timeout: float = 15) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"{text!r} never shown; saw {seen!r}"
        if select.select([fd], [], [], 0.2)[0]:
            seen += os.read(fd, 4096).decode(errors="replace")
    return seen


# --- get, list, cancel, audit export ------------------------------------------------------------


def test_get_list_and_export_the_audit_trail(env, tmp_path):
    process = start(env, *DEPLOY)
    decision = newest_decision("Deploy v1.2")
    clicks(ALICE, decision.id, "approve")
    assert finish(process)[0] == 0
    restarting = start(env, "ask", "Restart the cache", "--approver", ALICE, "--timeout", "90s")
    other = newest_decision("Restart")
    time_runs_out(other.id)
    assert finish(restarting)[0] == 2

    got = countersign(env, "get", decision.id, "--json")
    listed = countersign(env, "list", "--limit", "5")
    only_approved = countersign(env, "list", "--status", "approved", "--json")
    seal()
    exported = countersign(
        env, "audit", "export", "--decision", decision.id, "-o", str(tmp_path / "trail.csv")
    )

    assert got.returncode == 0
    assert json.loads(got.stdout)["outcome"]["by"] == ALICE
    lines = listed.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        [other.id, "expired"],
        [decision.id, "approved"],
    ]
    assert lines[1].endswith("Deploy v1.2 to prod")
    assert [d["id"] for d in json.loads(only_approved.stdout)] == [decision.id]
    assert exported.returncode == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "trail.csv").read_text(encoding="utf-8-sig"))))
    assert {row["decision_id"] for row in rows} == {decision.id}
    events = [row["event"] for row in rows]
    assert events[0] == "decision.created"
    assert "decision.resolved" in events


def test_audit_export_to_stdout_needs_the_audit_scope(env, acme):
    seal()
    everything = countersign(env, "audit", "export")
    decisions_only = api_key_create(organization=acme, scopes=["decisions"], name="pipeline")[1]
    refused = countersign({**env, "COUNTERSIGN_API_KEY": decisions_only}, "audit", "export")

    assert everything.returncode == 0
    assert everything.stdout.lstrip("\ufeff").startswith("time,organization,decision_id")
    assert refused.returncode == 3
    assert "403" in refused.stderr


# --- the example ----------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "sdk/python/examples"


@pytest.mark.parametrize(
    ("choice", "code", "says"), [("approve", 0, "approved: deploying v2.0"), ("deny", 1, "denied")]
)
def test_the_deploy_gate_example_deploys_only_once_approved(env, choice, code, says):
    path = f"{Path(sys.executable).parent}:{env['PATH']}"
    process = subprocess.Popen(
        ["sh", str(EXAMPLES / "deploy_gate.sh"), "v2.0"],
        env={**env, "PATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    decision = newest_decision("Deploy v2.0")
    clicks(ALICE, decision.id, choice)

    result, out, _ = finish(process)

    assert result == code
    assert out.splitlines()[-1].startswith(says)
    assert decision.details["version"] == "v2.0"
