"""Does the clock keep time with 100 000 decisions waiting? (issue 5)

Reports, on a real stack (uvicorn, a Celery worker, celery beat, PostgreSQL, Redis):
  - lateness: for 200 decisions that expire over the next minute, among 100 000 pending
    ones, the signed callback's arrival at a local receiver minus the decision's expires_at
    (and, for the clock alone, resolved_at minus expires_at), p50/p99/max
  - the sweep's query (fire_due's due-ids read) at 1 000 and at 100 000 pending: median of 50
    runs, EXPLAIN ANALYZE's execution time, and the index the plan uses

    python bench/clock.py [--pending 100000] [--expiring 200]

Needs PostgreSQL and Redis on 127.0.0.1. Figures, not pass/fail: it prints them. The target
(issue 5): lateness p99 <= 1.5 s; query time flat between 1 000 and 100 000 pending.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import PYTHON, ROOT, bench_env, fresh_database, new_api_key, percentile, running_stack

DATABASE = "countersign_bench_clock"
PORT = 8767
FIRST_STEP = 1_000  # the sweep's query is timed here, and again once all are pending


class Receiver(BaseHTTPRequestHandler):
    """The agent's webhook: when (wall clock) each decision's callback arrived, and its status."""

    arrivals: dict[str, tuple[float, str]] = {}
    received: Counter = Counter()  # every POST, to catch a decision called back twice

    def do_POST(self):
        arrived = time.time()
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        Receiver.received[body["data"]["id"]] += 1
        Receiver.arrivals.setdefault(body["data"]["id"], (arrived, body["data"]["status"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def start_receiver() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook"


# --- bulk pending decisions ---------------------------------------------------------------


def insert_pending(organization_id: int, first: int, count: int) -> float:
    """INSERT … SELECT generate_series: `count` pending decisions, due in a day (so never in this
    run), with every column the model has. Values come from the model's own defaults, so a
    column added later is filled in too. Returns the seconds it took."""
    from django.db import connection

    from decisions.models import Decision

    expressions = {
        "id": "'dec_bulk' || lpad(g::text, 10, '0')",
        "organization_id": str(int(organization_id)),
        "status": "'pending'",
        "action": "'Bulk refund #' || g",
        "action_hash": "encode(sha256(convert_to('Bulk refund #' || g, 'UTF8')), 'hex')",
        "created_at": "now()",
        "expires_at": "now() + interval '1 day'",
        "next_due_at": "now() + interval '1 day'",
    }
    stages = [{"approvers": ["alice@example.com"], "quorum": "any"}]
    columns, values, params = [], [], []
    for field in Decision._meta.concrete_fields:
        columns.append(connection.ops.quote_name(field.column))
        if field.column in expressions:
            values.append(expressions[field.column])
            continue
        value = stages if field.name == "stages" else field.get_default()
        if value is None:
            if not field.null:
                raise RuntimeError(f"bench/clock.py does not know what to put in {field.column}")
            values.append("NULL")
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(value, connection))
    # Table and column names come from the model, values are parameters.
    sql = (
        f"INSERT INTO {Decision._meta.db_table} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(values)} FROM generate_series(%s, %s) AS g"
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, first, first + count - 1])
        cursor.execute(f"ANALYZE {Decision._meta.db_table}")
    return time.perf_counter() - started


# --- the sweep's query --------------------------------------------------------------------


def due_query():
    """fire_due's read, exactly: the due ids, oldest first, one batch."""
    from django.utils import timezone

    from decisions.models import Decision, Status

    return (
        Decision.objects.filter(status=Status.PENDING, next_due_at__lte=timezone.now())
        .order_by("next_due_at")
        .values_list("pk", flat=True)[:500]
    )


def time_due_query(runs: int = 50) -> dict:
    from django.db import connection

    timings, found = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        found = len(list(due_query()))
        timings.append((time.perf_counter() - started) * 1000)
    queryset = due_query()
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        plan = [row[0] for row in cursor.fetchall()]
    execution = next(
        float(line.split(":")[1].split()[0]) for line in plan if line.startswith("Execution Time")
    )
    scan = next(line.strip().removeprefix("->").strip() for line in plan if "Scan" in line)
    return {
        "due": found,
        "median_ms": statistics.median(timings),
        "p99_ms": percentile(timings, 99),
        "explain_ms": execution,
        "scan": scan.split("  (")[0],
        "plan": plan,
    }


def time_due_query_with_due(count: int) -> dict:
    """The same, with `count` of the bulk decisions due: moved in a transaction rolled back."""
    from django.db import transaction
    from django.utils import timezone

    from decisions.models import Decision

    with transaction.atomic():
        bulk = Decision.objects.filter(id__startswith="dec_bulk").values_list("pk", flat=True)[:count]
        Decision.objects.filter(pk__in=list(bulk)).update(next_due_at=timezone.now() - timedelta(seconds=1))
        result = time_due_query()
        transaction.set_rollback(True)
    return result


# --- the run --------------------------------------------------------------------------------


@contextmanager
def running_beat(env: dict):
    """celery beat, the clock's metronome: it sends decisions.clock_tick every CLOCK_TICK_SECONDS."""
    with tempfile.TemporaryDirectory() as folder:
        beat = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "broker",
                "beat",
                "--loglevel",
                "WARNING",
                "--schedule",
                str(Path(folder) / "celerybeat-schedule"),
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        try:
            yield beat
        finally:
            os.killpg(beat.pid, signal.SIGTERM)
            try:
                beat.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(beat.pid, signal.SIGKILL)


def create_expiring(
    base: str, headers: dict, callback_url: str, count: int, *, reminders: list | None
) -> dict[str, float]:
    """`count` decisions through the API, timeouts spread from 15 s to 60 s, with the
    organization's reminders (None) or these. Returns each id's expires_at as a Unix time."""
    expires: dict[str, float] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for n in range(count):
            timeout_minutes = 0.25 + 0.75 * n / max(count - 1, 1)
            body = {
                "action": f"Refund order #{n}",
                "approver": "alice@example.com",
                "timeout_minutes": round(timeout_minutes, 4),
                "callback_url": callback_url,
            }
            if reminders is not None:
                body["reminders"] = reminders
            response = client.post("/decisions", json=body)
            response.raise_for_status()
            body = response.json()
            expires[body["id"]] = datetime.fromisoformat(
                body["expires_at"].replace("Z", "+00:00")
            ).timestamp()
    return expires


def wait_for_callbacks(expires: dict[str, float], grace: float = 30.0) -> None:
    deadline = max(expires.values()) + grace
    while time.time() < deadline and not all(decision_id in Receiver.arrivals for decision_id in expires):
        time.sleep(0.1)


def row(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name} | 0 | - | - | - |"
    return (
        f"| {name} | {len(values)} | {percentile(values, 50):.3f} | {percentile(values, 99):.3f} "
        f"| {max(values):.3f} |"
    )


def lateness_of(expires: dict[str, float]) -> dict:
    """For decisions with these deadlines: each stretch from the deadline to the agent's callback."""
    from decisions.models import Decision
    from notifications.models import Delivery, DeliveryAttempt

    arrived = {d: Receiver.arrivals[d] for d in expires if d in Receiver.arrivals}
    resolved = {d.pk: d for d in Decision.objects.filter(pk__in=list(expires), resolved_at__isnull=False)}
    # Where the callback's time goes after the clock: waiting in the queue for a worker, then
    # the attempt itself (signing, the POST, recording it).
    first_attempts = {
        attempt.delivery.decision_id: attempt.started_at
        for attempt in DeliveryAttempt.objects.filter(
            delivery__kind="callback", delivery__decision_id__in=list(resolved), number=1
        ).select_related("delivery")
    }
    outbox = Counter(Delivery.objects.filter(decision_id__in=list(expires)).values_list("purpose", flat=True))
    return {
        "lateness": [arrived[d][0] - expires[d] for d in arrived],
        "clock": [(d.resolved_at - d.expires_at).total_seconds() for d in resolved.values()],
        "queue_wait": [(first_attempts[d] - resolved[d].resolved_at).total_seconds() for d in first_attempts],
        "sending": [arrived[d][0] - first_attempts[d].timestamp() for d in first_attempts if d in arrived],
        "received": len(arrived),
        "statuses": sorted({status for _, status in arrived.values()}),
        "twice": sum(1 for d in expires if Receiver.received[d] > 1),
        "outbox": dict(sorted(outbox.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=100_000, help="decisions waiting, never due")
    parser.add_argument("--expiring", type=int, default=200, help="decisions expiring over the next minute")
    args = parser.parse_args()
    run_started = time.monotonic()

    env = bench_env(DATABASE)
    os.environ.update(env)
    fresh_database(env, DATABASE)
    key = new_api_key(env, "bench")
    # Messages left in the broker by an earlier run would only add noise.
    subprocess.run(
        [PYTHON, "-m", "celery", "-A", "broker", "purge", "-f"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=True,
    )
    import django

    django.setup()
    from decisions.models import Decision
    from organizations.models import Organization

    organization_id = Organization.objects.get(slug="bench").pk

    # The sweep's query at 1 000 pending, then at 100 000 (and with 200 of those due).
    first = min(FIRST_STEP, args.pending)
    insert_seconds = insert_pending(organization_id, 1, first)
    at_first = time_due_query()
    insert_seconds += insert_pending(organization_id, first + 1, args.pending - first)
    at_all = time_due_query()
    with_due = time_due_query_with_due(args.expiring)
    assert Decision.objects.filter(status="pending").count() == args.pending

    callback_url = start_receiver()
    base = f"http://127.0.0.1:{PORT}"
    headers = {"Authorization": f"Bearer {key}"}
    # Two rounds on one stack: with the organization's reminders (at 50 % and 90 % of each
    # wait: 400 reminder emails share the worker with the callbacks), then with none (the
    # clock and the callbacks alone).
    phases = {}
    with running_stack(env, port=PORT), running_beat(env):
        for name, reminders in (("default reminders", None), ("no reminders", [])):
            started = time.time()
            expires = create_expiring(base, headers, callback_url, args.expiring, reminders=reminders)
            phases[name] = (expires, time.time() - started)
            wait_for_callbacks(expires)

    print()
    print(
        f"{args.pending:,} pending decisions (bulk-inserted in {insert_seconds:.1f} s, due in a day); then, "
        f"twice, {args.expiring} created through the API, expiring 15 to 60 s after creation. "
        "2 uvicorn workers, a Celery worker (concurrency 2), celery beat ticking every "
        f"{os.environ.get('CLOCK_TICK_SECONDS', '1')} s; all on this machine ({os.cpu_count()} cores)."
    )
    print()
    print("| lateness (s) | n | p50 | p99 | max |")
    print("|---|---|---|---|---|")
    notes = []
    for name, (expires, created_s) in phases.items():
        result = lateness_of(expires)
        print(row(f"{name}: expires_at → callback received", result["lateness"]))
        print(row(f"{name}: expires_at → resolved by the clock", result["clock"]))
        print(row(f"{name}: resolved → callback attempt started (queue wait)", result["queue_wait"]))
        print(row(f"{name}: callback attempt started → received", result["sending"]))
        notes.append(
            f"{name}: created in {created_s:.1f} s; callbacks received {result['received']}/{len(expires)}, "
            f"statuses {result['statuses']}, decisions called back more than once: {result['twice']}; "
            f"late by more than 2 s: {sum(1 for v in result['lateness'] if v > 2)}; outbox rows by purpose "
            f"{result['outbox']}."
        )
    print()
    for note in notes:
        print(f"- {note}")
    print()
    print("| sweep's due-ids query | due | median of 50 (ms) | p99 (ms) | EXPLAIN ANALYZE (ms) | plan |")
    print("|---|---|---|---|---|---|")
    for label, result in (
        (f"{first:,} pending", at_first),
        (f"{args.pending:,} pending", at_all),
        (f"{args.pending:,} pending, {args.expiring} due", with_due),
    ):
        print(
            f"| {label} | {result['due']} | {result['median_ms']:.3f} | {result['p99_ms']:.3f} "
            f"| {result['explain_ms']:.3f} | {result['scan']} |"
        )
    print()
    print(f"Plan at {args.pending:,} pending, {args.expiring} due:")
    print("```")
    print("\n".join(with_due["plan"]))
    print("```")
    print(f"Total run time {time.monotonic() - run_started:.0f} s.")


if __name__ == "__main__":
    main()
