"""Web CPU per POST /decisions, by server: what a create costs the web tier in CPU time.

CPU seconds, unlike wall time, barely move when other programs share the machine, so this
figure holds on a busy 2-core box where throughput does not. For each server (bench/stack.py
SERVERS: broker/asgi.py under uvicorn; everything through Django's ASGI handler under uvicorn;
gunicorn serving WSGI, if installed), one web process is started, warmed, then `hey` sends a
fixed number of creates at a fixed concurrency; the web processes' user + system CPU (from
/proc) over the run, divided by the creates answered 201, is the figure. Servers alternate,
several rounds.

    python bench/web_cpu.py [rounds]
Needs PostgreSQL, Redis and hey.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.api_throughput import hey
from bench.stack import (
    SERVERS,
    bench_env,
    fresh_database,
    new_api_key,
    running_stack,
    tree_cpu_seconds,
)

DATABASE = os.environ.get("BENCH_DATABASE", "countersign_bench_cpu")
PORT = int(os.environ.get("BENCH_PORT", "8768"))
CREATES = 1500


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    env = bench_env(DATABASE)
    os.environ.update(env)
    fresh_database(env, DATABASE)
    key = new_api_key(env, "bench")
    url = f"http://127.0.0.1:{PORT}/decisions"
    results: dict[str, list[float]] = {server: [] for server in SERVERS}
    for _ in range(rounds):
        for server in SERVERS:
            with running_stack(env, port=PORT, web_workers=1, celery_concurrency=0, server=server) as web:
                hey(url, key, "-n", "200", "-c", "4")  # warm: imports, connections, caches
                before = tree_cpu_seconds(web.pid)
                run = hey(url, key, "-n", str(CREATES), "-c", "4")
                spent = tree_cpu_seconds(web.pid) - before
            created = int(run["statuses"].get("201", 0))
            results[server].append(spent / created * 1000)
            print(
                f"{server}: {spent / created * 1000:.1f} ms CPU per create ({created} created, "
                f"{run['rps']:.0f}/s, p50 {run['latency_ms'][50]:.1f} ms)",
                flush=True,
            )
    print()
    print("| server | web CPU ms per create (each round) | best |")
    print("|---|---|---|")
    for server, figures in results.items():
        print(f"| {server} | {', '.join(f'{f:.1f}' for f in figures)} | {min(figures):.1f} |")


if __name__ == "__main__":
    main()
