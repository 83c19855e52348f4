"""How late is the audit sealer at 100 000 events a minute? (issue 13)

pgbench appends audit events at a fixed rate (default 1 667/s = 100 000 a minute, across 8
organizations, one event per transaction as the cheapest writers do) for a minute, while the
real sealer runs as it does in production: celery beat sends `audit.seal` every
AUDIT_SEAL_SECONDS (1 s) to a Celery worker on the clock queue. A monitor polls each
organization's chain size every 50 ms. An event's sealing lateness is the first poll that saw
it linked minus its commit time (the INSERT's clock_timestamp(); autocommit). Prints p50, p99
and max, the events written and sealed, and the seal runs' sizes.

    python bench/audit_sealing.py [--rate 1667] [--seconds 60]

Needs PostgreSQL, Redis and pgbench on 127.0.0.1. Figures, not pass/fail. Target (issue 13):
p99 <= 2 s.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import PYTHON, ROOT, bench_env, fresh_database, manage, percentile

DATABASE = "countersign_bench_sealing"
ORGANIZATIONS = 8
POLL_SECONDS = 0.05

WRITER = """\\set org random(1, {organizations})
INSERT INTO audit_auditevent (organization_id, created_at, event, actor, channel, payload, content_hash)
VALUES ((SELECT id FROM organizations_organization ORDER BY id OFFSET :org - 1 LIMIT 1), clock_timestamp(),
        'bench.event', 'system', '', '{{}}', md5(random()::text) || md5(random()::text));
"""


@contextmanager
def sealer(env: dict):
    """celery beat and a Celery worker on the clock queue: the sealer as deployed."""
    with tempfile.TemporaryDirectory() as folder:
        procs = [
            subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "celery",
                    "-A",
                    "broker",
                    "worker",
                    "-Q",
                    "clock",
                    "--concurrency",
                    "1",
                    "--loglevel",
                    "WARNING",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=ROOT,
                env=env,
                start_new_session=True,
            ),
            subprocess.Popen(
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
            ),
        ]
        try:
            time.sleep(5)  # worker connected, beat's first ticks sent
            yield
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


def monitor(dsn: str, organization_ids: list[int], stop: threading.Event, seen: list) -> None:
    """(time, {organization: chain size}) every POLL_SECONDS."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            sizes = {}
            for organization_id in organization_ids:
                row = conn.execute(
                    "SELECT seq FROM audit_auditlink WHERE organization_id = %s ORDER BY seq DESC LIMIT 1",
                    [organization_id],
                ).fetchone()
                sizes[organization_id] = row[0] if row else 0
            seen.append((time.time(), sizes))
            time.sleep(POLL_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=1667, help="events per second")
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()

    env = bench_env(DATABASE, AUDIT_SEAL_SECONDS="1", AUDIT_CHECKPOINT_DIR=tempfile.mkdtemp())
    fresh_database(env, DATABASE)
    for n in range(ORGANIZATIONS):
        manage(env, "create_api_key", "--org", f"bench{n}")
    dsn = f"host=127.0.0.1 user=postgres dbname={DATABASE}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        organization_ids = [
            r[0] for r in conn.execute("SELECT id FROM organizations_organization ORDER BY id")
        ]

    seen, stop = [], threading.Event()
    with sealer(env):
        watcher = threading.Thread(target=monitor, args=(dsn, organization_ids, stop, seen))
        watcher.start()
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write(WRITER.format(organizations=ORGANIZATIONS))
        started = time.time()
        subprocess.run(
            [
                "pgbench",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-n",
                "-f",
                script.name,
                "-c",
                "8",
                "-j",
                "2",
                "-R",
                str(args.rate),
                "-T",
                str(args.seconds),
                DATABASE,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        os.unlink(script.name)
        written_for = time.time() - started
        # let the sealer catch up, then stop watching
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.time() + 30
            while time.time() < deadline:
                (unsealed,) = conn.execute(
                    "SELECT count(*) FROM audit_auditevent e"
                    " LEFT JOIN audit_auditlink l ON l.event_id = e.id WHERE l.event_id IS NULL"
                ).fetchone()
                if not unsealed:
                    break
                time.sleep(0.2)
        time.sleep(0.2)
        stop.set()
        watcher.join()

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT l.organization_id, l.seq, extract(epoch FROM e.created_at) FROM audit_auditlink l "
            "JOIN audit_auditevent e ON e.id = l.event_id ORDER BY l.organization_id, l.seq"
        ).fetchall()
        (written,) = conn.execute("SELECT count(*) FROM audit_auditevent").fetchone()
        runs = [r[0] for r in conn.execute("SELECT events FROM audit_auditseal WHERE events > 0 ORDER BY id")]

    lateness = []
    cursor = {organization_id: 0 for organization_id in organization_ids}  # index into seen per org
    for organization_id, seq, committed in rows:
        index = cursor[organization_id]
        while index < len(seen) and seen[index][1][organization_id] < seq:
            index += 1
        cursor[organization_id] = index
        if index < len(seen):
            lateness.append(seen[index][0] - float(committed))

    print(
        f"audit sealing at {args.rate} events/s for {args.seconds} s ({written} events written in "
        f"{written_for:.0f} s = {written / written_for * 60:,.0f}/min, {ORGANIZATIONS} organizations)"
    )
    print(
        f"  sealed: {len(rows)} of {written}; seal runs: {len(runs)}, events per run p50 "
        f"{percentile(runs, 50):.0f}, max {max(runs)}"
    )
    print(
        f"  lateness (sealed - committed, polled every {POLL_SECONDS * 1000:.0f} ms): p50 "
        f"{percentile(lateness, 50):.2f} s, p99 {percentile(lateness, 99):.2f} s, max {max(lateness):.2f} s"
    )


if __name__ == "__main__":
    main()
