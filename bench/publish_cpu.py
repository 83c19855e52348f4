"""CPU per delivery handed to the broker: what notifications.services._publish costs the web
process after a commit, against a real Redis broker. One publish is timed in isolation (no
request, no database), so the figure is the hand-off alone.

    python bench/publish_cpu.py [rounds]
Variants, each in a process of its own, alternating over the rounds: this code as it is, and
the same with kombu's stock Redis transport (a new Redis client per publish). Each publishes
transactions of 1 and of 5 deliveries. Prints CPU µs per delivery (best and median of rounds).
Needs Redis; the broker's queues in BENCH_BROKER_URL are emptied after each round.
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import PYTHON, ROOT, bench_env

TRANSACTIONS = 1000
VARIANTS = {"this code": "", "stock kombu transport": "redis"}
SIZES = (1, 5)


def measure(transport: str, size: int) -> float:
    """CPU µs per delivery, in this process (run as a child by main)."""
    import django

    django.setup()
    import redis

    from broker.celery import app
    from notifications.services import _publish

    if transport:
        app.conf.broker_transport = transport
    queue = redis.Redis.from_url(app.conf.broker_url)
    ids = list(range(1, size + 1))
    for _ in range(50):  # warm: connection, channel, declared queue
        _publish(ids)
    started = time.process_time()
    for _ in range(TRANSACTIONS):
        _publish(ids)
    spent = time.process_time() - started
    queue.delete("celery")
    return spent / (TRANSACTIONS * size) * 1e6


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(measure(sys.argv[2], int(sys.argv[3])))
        return
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    env = bench_env("countersign_bench_publish")
    results: dict[tuple[str, int], list[float]] = {(v, s): [] for v in VARIANTS for s in SIZES}
    for _ in range(rounds):
        for (variant, size), figures in results.items():
            command = [PYTHON, __file__, "--child", VARIANTS[variant], str(size)]
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
            figures.append(float(done.stdout.strip().splitlines()[-1]))
    for (variant, size), figures in results.items():
        print(
            f"{variant:22s} {size} per transaction: {min(figures):6.0f} µs CPU per delivery "
            f"(median {statistics.median(figures):.0f}, {rounds} rounds)"
        )


if __name__ == "__main__":
    main()
