"""POST /decisions: how many per second, how fast, next to the database doing the same work.

On a real stack (uvicorn, PostgreSQL, Redis; no Celery worker, so the web tier has the
machine's cores to itself), `hey` drives:
  - the most it serves: 16 connections, as fast as they go;
  - a fixed 200 requests/second for 15 s: latency p50/p95/p99.
Then pgbench runs, as one transaction each, the very SQL one create executes (captured from
a real request, with the decision id and request id made unique per run),
16 clients. The figure is the ratio: API creates/s over pgbench creates/s.

    python bench/api_throughput.py
Needs PostgreSQL, Redis, pgbench and hey (Debian packages postgresql-client and hey).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import bench_env, fresh_database, manage, pgbench, running_stack

# Overridable so that two people benchmarking on one machine do not share a database or port.
DATABASE = os.environ.get("BENCH_DATABASE", "countersign_bench_api")
PORT = int(os.environ.get("BENCH_PORT", "8767"))
BODY = {"action": "Refund $120 to order #1042", "details": {"amount": 120}, "approver": "alice@example.com"}


def hey(url: str, key: str, *args: str) -> dict:
    done = subprocess.run(
        [
            "hey",
            *args,
            "-m",
            "POST",
            "-T",
            "application/json",
            "-H",
            f"Authorization: Bearer {key}",
            "-d",
            json.dumps(BODY),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = done.stdout
    latency = {int(p): float(s) * 1000 for p, s in re.findall(r"(\d+)%+ in ([\d.]+) secs", out)}
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "latency_ms": latency,
        "statuses": dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out)),
    }


def capture_create_sql(key: str) -> list[str]:
    """The SQL of one POST /decisions, as the app runs it."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST="127.0.0.1")
    client.post("/decisions", BODY, content_type="application/json")  # warm: policies, the key
    with CaptureQueriesContext(connection) as captured:
        assert client.post("/decisions", BODY, content_type="application/json").status_code == 201
    return [query["sql"] for query in captured.captured_queries]


def pgbench_script(queries: list[str]) -> str:
    """Those statements with what must be unique per run made into pgbench variables."""
    decision_id = re.search(r"'(dec_[0-9a-z]{26})'", "\n".join(queries)).group(1)
    lines = ["\\set n random(1, 2000000000)"]
    for sql in queries:
        sql = sql.replace(decision_id, "dec_pgb:client_id.:n")
        if sql.startswith('INSERT INTO "decisions_approvalrequest"'):
            sql += " \\gset r_" if "RETURNING" in sql else " RETURNING id \\gset r_"
        elif sql.startswith('INSERT INTO "notifications_delivery"'):
            sql = re.sub(r"'dec_pgb:client_id.:n', \d+,", "'dec_pgb:client_id.:n', :r_id,", sql)
        lines.append(sql + ("" if sql.endswith("\\gset r_") else ";"))
    return "\n".join(lines) + "\n"


def main() -> None:
    for tool in ("hey", "pgbench"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed: apt-get install {'hey' if tool == 'hey' else 'postgresql-client'}")
    env = bench_env(DATABASE)
    os.environ.update(env)
    fresh_database(env, DATABASE)
    key = manage(env, "create_api_key", "--org", "bench").strip().splitlines()[-1]
    url = f"http://127.0.0.1:{PORT}/decisions"

    with running_stack(env, port=PORT, web_workers=2, celery_concurrency=0) as _web:
        hey(url, key, "-n", "300", "-c", "4")  # warm up
        most = hey(url, key, "-n", "3000", "-c", "16")
        steady = hey(
            url, key, "-z", "15s", "-c", "50", "-q", "4"
        )  # 50 connections at 4/s each: 200 requests/s
    queries = capture_create_sql(key)
    database = pgbench(env, [pgbench_script(queries)], database=DATABASE, clients=16, seconds=15)

    print()
    print(f"POST /decisions, one approver ({len(queries)} SQL statements each), uvicorn with 2 workers:")
    print()
    print("| load | creates/s | p50 ms | p95 ms | p99 ms | statuses |")
    print("|---|---|---|---|---|---|")
    for name, run in (("16 connections, flat out", most), ("fixed 200 requests/s, 15 s", steady)):
        lat = run["latency_ms"]
        percentiles = " | ".join(f"{lat[p]:.1f}" for p in (50, 95, 99))
        print(f"| {name} | {run['rps']:.0f} | {percentiles} | {run['statuses']} |")
    print(
        f"| pgbench, the same SQL, 16 clients | {database['tps']:.0f} | avg {database['latency_ms']:.1f} "
        f"| | | {database['failed']} failed |"
    )
    print()
    print(f"Ratio API / database: {most['rps'] / database['tps']:.0%}")


if __name__ == "__main__":
    main()
