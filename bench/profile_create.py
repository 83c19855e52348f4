"""Where a POST /decisions spends its CPU, in one process: Django's test client drives the whole
request (middleware, authentication, throttle, validation, service, rendering) against the real
PostgreSQL and Redis, with no server in between. Prints the CPU per create, then cProfile's
heaviest functions by cumulative time.

    python bench/profile_create.py [creates] [--policy]
--policy adds a rule that approves every create, to profile the auto-approved path.
Needs PostgreSQL and Redis; the database is made afresh.
"""

import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import bench_env, fresh_database, new_api_key

DATABASE = os.environ.get("BENCH_DATABASE", "countersign_bench_profile")
BODY = {
    "action": "refund",
    "context": "Customer asked for a refund of order 1234.",
    "details": {"amount": 42, "currency": "EUR"},
    "approvers": ["alice@example.com"],
    "timeout_minutes": 60,
}


def main() -> None:
    creates = int(next((a for a in sys.argv[1:] if a.isdigit()), "400"))
    env = bench_env(DATABASE)
    os.environ.update(env)
    fresh_database(env, DATABASE)
    key = new_api_key(env, "bench")

    import django

    django.setup()
    from django.test import Client

    from decisions.models import Policy
    from organizations.models import Organization

    if "--policy" in sys.argv:
        organization = Organization.objects.get(slug="bench")
        Policy.objects.create(
            organization=organization, name="auto", action=Policy.Action.APPROVE, conditions={}
        )
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST="localhost")

    def create() -> None:
        response = client.post("/decisions", BODY, content_type="application/json")
        assert response.status_code == 201, response.content

    for _ in range(100):  # warm: imports, connections, caches
        create()
    started = time.process_time()
    for _ in range(creates):
        create()
    print(f"{(time.process_time() - started) / creates * 1000:.2f} ms CPU per create (no profiler)")

    profiler = cProfile.Profile(time.process_time)  # CPU, not waiting on PostgreSQL
    profiler.enable()
    for _ in range(creates):
        create()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
