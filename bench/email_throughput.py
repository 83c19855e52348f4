"""Do the emails keep up? One email per POST /decisions, creates at a fixed 100/s for 10 s, on a
real stack (2 web processes, one Celery worker, PostgreSQL, Redis; emails go through Django's
mail layer to locmem). Prints when the outbox was empty again after the load stopped, and the
worker's CPU per email sent (user + system, from /proc). Once with the worker's prefork pool of
2 processes, once with a pool of 8 threads in one process (`--pool threads`).

    python bench/email_throughput.py [rate] [seconds]
Needs PostgreSQL, Redis and hey.
"""

import os
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.api_throughput import fixed_rate, hey
from bench.stack import bench_env, fresh_database, new_api_key, running_stack, tree_cpu_seconds

DATABASE = os.environ.get("BENCH_DATABASE", "countersign_bench_email")
PORT = int(os.environ.get("BENCH_PORT", "8769"))
PENDING_EMAILS = "SELECT count(*) FROM notifications_delivery WHERE kind = 'email' AND status = 'pending'"
SENT_EMAILS = "SELECT count(*) FROM notifications_delivery WHERE kind = 'email' AND status = 'sent'"


def count(connection, sql: str) -> int:
    return connection.execute(sql).fetchone()[0]


def wait_until_drained(connection, timeout: float = 120) -> float:
    """Seconds until no email is pending (polled every 20 ms)."""
    started = time.monotonic()
    while count(connection, PENDING_EMAILS):
        if time.monotonic() - started > timeout:
            raise RuntimeError("the outbox did not drain")
        time.sleep(0.02)
    return time.monotonic() - started


def main() -> None:
    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    env = bench_env(DATABASE)
    os.environ.update(env)
    fresh_database(env, DATABASE)
    key = new_api_key(env, "bench")
    url = f"http://127.0.0.1:{PORT}/decisions"
    rows = []
    for pool, concurrency in (("prefork", 2), ("threads", 8)):
        with (
            psycopg.connect(f"host=127.0.0.1 user=postgres dbname={DATABASE}", autocommit=True) as db,
            running_stack(
                env, port=PORT, web_workers=2, celery_concurrency=concurrency, celery_pool=pool
            ) as web,
        ):
            hey(url, key, "-n", "200", "-c", "4")  # warm: imports, connections, templates
            wait_until_drained(db)
            sent_before, cpu_before = count(db, SENT_EMAILS), tree_cpu_seconds(web.worker.pid)
            run = fixed_rate(url, key, rate=rate, seconds=seconds)
            drained_after = wait_until_drained(db)
            emails = count(db, SENT_EMAILS) - sent_before
            worker_cpu = tree_cpu_seconds(web.worker.pid) - cpu_before
        rows.append(
            f"| {pool}, {concurrency} | {run['rps']:.0f} | {emails} | {drained_after:.2f} s "
            f"| {worker_cpu / emails * 1000:.1f} ms |"
        )
    print()
    print(f"One email per create, {rate} creates/s asked for {seconds} s (open loop):")
    print()
    print("| worker pool | creates/s | emails sent | outbox empty after the load | worker CPU per email |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
