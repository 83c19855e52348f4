"""Where a worker's CPU goes when it sends an approver's email: decisions are created in this
process, then each email delivery is attempted as the Celery task would (claim, render, send
through Django's mail layer to locmem, record), with no broker in between. Prints the CPU per
email, then cProfile's heaviest functions by cumulative CPU time.

    python bench/profile_email.py [emails]
Needs PostgreSQL and Redis; the database is made afresh.
"""

import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import bench_env, fresh_database, manage

DATABASE = os.environ.get("BENCH_DATABASE", "countersign_bench_profile_email")


def main() -> None:
    emails = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    env = bench_env(DATABASE)
    os.environ.update(env)
    fresh_database(env, DATABASE)
    manage(env, "create_api_key", "--org", "bench")

    import django

    django.setup()
    from django.core import mail

    from decisions.services import DecisionSpec, decision_create
    from notifications.models import Delivery
    from notifications.services import delivery_attempt
    from organizations.models import ApiKey

    api_key = ApiKey.objects.select_related("organization").get(organization__slug="bench")
    spec = DecisionSpec(
        action="Refund $120 to order #1042",
        details={"amount": 120},
        stages=[{"approvers": ["alice@example.com"], "quorum": "any"}],
    )

    def email_ids(count: int) -> list[int]:
        for _ in range(count):
            decision_create(api_key=api_key, spec=spec)
        pending = Delivery.objects.filter(kind=Delivery.Kind.EMAIL, status=Delivery.Status.PENDING)
        return list(pending.values_list("pk", flat=True))

    def send(ids: list[int]) -> None:
        for delivery_id in ids:
            delivery_attempt(delivery_id=delivery_id)

    send(email_ids(50))  # warm: templates, connections
    ids = email_ids(emails)
    started = time.process_time()
    send(ids)
    print(f"{(time.process_time() - started) / len(ids) * 1000:.2f} ms CPU per email (no profiler)")
    assert len(mail.outbox) == 50 + len(ids)

    ids = email_ids(emails)
    profiler = cProfile.Profile(time.process_time)  # CPU, not waiting on PostgreSQL
    profiler.enable()
    send(ids)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
