"""POST /decisions against issue 14's targets, all measured in one run on a real stack (the web
server, PostgreSQL, Redis, no Celery worker, so the web tier has the cores; `hey` is the load):

  - 8 clients flat out: creates/s, latency; beside pgbench running the very SQL one create
    executes (captured from a real request), 8 clients, in the same run: the ratio;
  - one client: p50;
  - a fixed 100 requests/s for 15 s, open loop (each request sent at its time, whether or not
    earlier ones were answered; latency counted from that time): p99. hey's -q paces each
    connection by itself, so its connections fire together in bursts, which is not a fixed rate;
  - 64 clients: any error, and the slowest answer (a stall shows there);
  - a create that a policy rule approves at once, one client: p50;
  - 2 web processes against 1, 8 clients flat out each: the ratio.

    python bench/api_throughput.py
Needs PostgreSQL, Redis, pgbench and hey (Debian packages postgresql-client and hey).
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import bench_env, fresh_database, manage, new_api_key, percentile, pgbench, running_stack

# Overridable so that two people benchmarking on one machine do not share a database or port.
DATABASE = os.environ.get("BENCH_DATABASE", "countersign_bench_api")
PORT = int(os.environ.get("BENCH_PORT", "8767"))
BODY = {"action": "Refund $120 to order #1042", "details": {"amount": 120}, "approver": "alice@example.com"}


def hey(url: str, key: str, *args: str, body: dict = BODY) -> dict:
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
            json.dumps(body),
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
        "slowest_ms": float(re.search(r"Slowest:\s+([\d.]+) secs", out).group(1)) * 1000,
        "statuses": dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out)),
        "errors": re.search(r"Error distribution:(.*)", out, re.S).group(1).strip()
        if "Error distribution" in out
        else "",
    }


async def _open_loop(url: str, key: str, rate: float, seconds: float) -> dict:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    body = json.dumps(BODY)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        start = loop.time() + 0.2

        async def one(at: float) -> None:
            await asyncio.sleep(at - loop.time())
            try:
                response = await client.post(url, content=body)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                return
            latencies.append((loop.time() - at) * 1000)
            statuses[str(response.status_code)] += 1

        await asyncio.gather(*(one(start + i / rate) for i in range(int(rate * seconds))))
        elapsed = loop.time() - start
    return {
        "rps": len(latencies) / elapsed,
        "latency_ms": {p: percentile(latencies, p) for p in (50, 95, 99)},
        "slowest_ms": max(latencies),
        "statuses": dict(statuses),
        "errors": ", ".join(f"{name}: {n}" for name, n in errors.items()),
    }


def fixed_rate(url: str, key: str, *, rate: float, seconds: float) -> dict:
    """`rate` POST /decisions a second for `seconds`, each sent at its time (open loop)."""
    return asyncio.run(_open_loop(url, key, rate, seconds))


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


AUTO_APPROVE = """
from decisions.models import Policy
from organizations.models import Organization
Policy.objects.create(organization=Organization.objects.get(slug="bench-auto"), name="approve-all",
                      action=Policy.Action.APPROVE)
"""


def row(name: str, run: dict) -> str:
    lat = run["latency_ms"]
    failures = {status: n for status, n in run["statuses"].items() if status not in ("200", "201")}
    trouble = ", ".join(filter(None, [str(failures) if failures else "", run["errors"]])) or "none"
    return (
        f"| {name} | {run['rps']:.0f} | {lat[50]:.1f} | {lat[95]:.1f} | {lat[99]:.1f} "
        f"| {run['slowest_ms']:.0f} | {trouble} |"
    )


def main() -> None:
    for tool in ("hey", "pgbench"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed: apt-get install {'hey' if tool == 'hey' else 'postgresql-client'}")
    env = bench_env(DATABASE)
    os.environ.update(env)
    fresh_database(env, DATABASE)
    key = new_api_key(env, "bench")
    auto_key = new_api_key(env, "bench-auto")
    manage(env, "shell", "-c", AUTO_APPROVE)
    url = f"http://127.0.0.1:{PORT}/decisions"

    runs = {}
    with running_stack(env, port=PORT, web_workers=1, celery_concurrency=0):
        hey(url, key, "-n", "300", "-c", "4")  # warm up
        runs["one"] = hey(url, key, "-n", "2000", "-c", "8")
    with running_stack(env, port=PORT, web_workers=2, celery_concurrency=0):
        hey(url, key, "-n", "300", "-c", "4")
        hey(url, auto_key, "-n", "100", "-c", "1")
        runs["8 clients, flat out"] = hey(url, key, "-n", "3000", "-c", "8")
        runs["1 client"] = hey(url, key, "-n", "500", "-c", "1")
        runs["fixed 100 requests/s, 15 s, open loop"] = fixed_rate(url, key, rate=100, seconds=15)
        runs["64 clients, flat out"] = hey(url, key, "-n", "3000", "-c", "64")
        runs["1 client, a policy rule approves"] = hey(url, auto_key, "-n", "500", "-c", "1")
    queries = capture_create_sql(key)
    database = pgbench(env, [pgbench_script(queries)], database=DATABASE, clients=8, seconds=15)

    one_process = runs.pop("one")
    print()
    print(f"POST /decisions, one approver ({len(queries)} SQL statements each), 2 web processes:")
    print()
    print("| load | creates/s | p50 ms | p95 ms | p99 ms | slowest ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        print(row(name, run))
    print(
        f"| pgbench, the same SQL, 8 clients | {database['tps']:.0f} | avg {database['latency_ms']:.1f} "
        f"| | | | {database['failed']} failed |"
    )
    print(row("8 clients, flat out, 1 web process", one_process))
    print()
    most = runs["8 clients, flat out"]
    print(f"Ratio API / database at 8 clients: {most['rps'] / database['tps']:.0%}")
    print(f"2 web processes / 1: {most['rps'] / one_process['rps']:.2f}x")


if __name__ == "__main__":
    main()
