"""How fast does an agent learn of a click? (issue 4)

Reports, on a real stack (uvicorn with 2 workers, a Celery worker, PostgreSQL, Redis):
  - click → callback: the approver's confirm POST is sent → the local receiver has the signed callback
  - click → long-poll: the same click → a GET /decisions/{id}?wait=30 that was already waiting answers
  - 1 000 concurrent long-polls: total RSS of the web processes while they wait, and how soon
    each is answered once its decision is cancelled (p50/p95/max)

    python bench/callbacks_longpoll.py [--clicks 100] [--waiters 1000]

Needs PostgreSQL and Redis on 127.0.0.1. Figures, not pass/fail: it prints them.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import bench_env, fresh_database, new_api_key, percentile, rss_mb, running_stack

DATABASE = "countersign_bench_callbacks"
PORT = 8765


class Receiver(BaseHTTPRequestHandler):
    arrivals: dict[str, float] = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        Receiver.arrivals[json.loads(body)["data"]["id"]] = time.perf_counter()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def start_receiver() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook"


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.001)


def approve_link_path(decision_id: str) -> str:
    from decisions.links import link_token
    from decisions.models import ApprovalRequest

    request = ApprovalRequest.objects.get(decision_id=decision_id)
    return f"/a/{link_token(request, 'approve')}"


def measure_clicks(base: str, headers: dict, callback_url: str, clicks: int) -> tuple[list, list]:
    to_callback, to_long_poll = [], []
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(clicks):
            created = client.post(
                "/decisions",
                headers=headers,
                json={"action": "Refund $120", "approver": "alice@example.com", "callback_url": callback_url},
            ).json()
            decision_id = created["id"]
            path = approve_link_path(decision_id)
            answered: dict[str, float] = {}

            def long_poll(decision_id=decision_id, answered=answered):
                response = httpx.get(f"{base}/decisions/{decision_id}?wait=30", headers=headers, timeout=40)
                answered["at"] = time.perf_counter()
                answered["status"] = response.json()["status"]

            poller = threading.Thread(target=long_poll)
            poller.start()
            time.sleep(0.05)  # let the long-poll reach its wait
            clicked = time.perf_counter()
            client.post(path, data={"confirm": "yes"})
            wait_until(lambda decision_id=decision_id: decision_id in Receiver.arrivals)
            poller.join()
            assert answered["status"] == "approved", answered
            to_callback.append((Receiver.arrivals[decision_id] - clicked) * 1000)
            to_long_poll.append((answered["at"] - clicked) * 1000)
    return to_callback, to_long_poll


async def measure_waiters(base: str, headers: dict, count: int, web_pid: int, sampled: int = 100) -> dict:
    """Hold `count` long-polls open; resolve `sampled` of them one at a time (how soon is each
    answered while the others wait?), then the rest at once, 8 in flight (how long to drain?)."""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=90) as client:
        semaphore = asyncio.Semaphore(20)

        async def create() -> str:
            async with semaphore:
                response = await client.post(
                    "/decisions", json={"action": "Rotate keys", "approver": "bob@example.com"}
                )
                return response.json()["id"]

        ids = await asyncio.gather(*(create() for _ in range(count)))
    rss_before = rss_mb(web_pid)
    answered_at: dict[str, float] = {}
    statuses: dict[str, str] = {}
    # Fresh clients per phase: uvicorn closes idle keep-alive connections after 5 s.
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=90, limits=limits) as pollers:

        async def long_poll(decision_id: str) -> None:
            response = await pollers.get(f"/decisions/{decision_id}", params={"wait": 60})
            answered_at[decision_id] = time.perf_counter()
            statuses[decision_id] = response.json()["status"]

        polls = [asyncio.create_task(long_poll(decision_id)) for decision_id in ids]
        await asyncio.sleep(10)  # every long-poll past its first read and waiting
        rss_waiting = rss_mb(web_pid)
        waiting = count - len(answered_at)

        sample, rest = ids[:sampled], ids[sampled:]
        wake_ms = []
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=90) as agent:
            for decision_id in sample:
                sent = time.perf_counter()
                assert (await agent.post(f"/decisions/{decision_id}/cancel")).status_code == 200
                while decision_id not in answered_at:
                    await asyncio.sleep(0.001)
                wake_ms.append((answered_at[decision_id] - sent) * 1000)
                await asyncio.sleep(0.05)

            burst = asyncio.Semaphore(8)

            async def cancel(decision_id: str) -> None:
                async with burst:
                    assert (await agent.post(f"/decisions/{decision_id}/cancel")).status_code == 200

            burst_started = time.perf_counter()
            await asyncio.gather(*(cancel(decision_id) for decision_id in rest))
            await asyncio.gather(*polls)
        drain_s = max(answered_at[decision_id] for decision_id in rest) - burst_started
    return {
        "waiters": count,
        "waiting": waiting,
        "answered cancelled": sum(1 for s in statuses.values() if s == "cancelled"),
        "rss_before_mb": rss_before,
        "rss_waiting_mb": rss_waiting,
        "wake_ms": wake_ms,
        "burst": len(rest),
        "drain_s": drain_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=100)
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--web-workers", type=int, default=2, help="uvicorn worker processes")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    env = bench_env(DATABASE)
    os.environ.update(env)
    fresh_database(env, DATABASE)
    key = new_api_key(env, "bench")
    headers = {"Authorization": f"Bearer {key}"}
    import django

    django.setup()
    callback_url = start_receiver()
    base = f"http://127.0.0.1:{PORT}"

    with running_stack(env, port=PORT, web_workers=args.web_workers) as web:
        for _ in range(5):  # warm up both paths
            measure_clicks(base, headers, callback_url, 1)
        to_callback, to_long_poll = measure_clicks(base, headers, callback_url, args.clicks)
        waiters = asyncio.run(measure_waiters(base, headers, args.waiters, web.pid))

    def row(name, values):
        p50, p95 = percentile(values, 50), percentile(values, 95)
        return f"| {name} | {len(values)} | {p50:.1f} | {p95:.1f} | {max(values):.1f} |"

    print()
    print("| measure (ms) | n | p50 | p95 | max |")
    print("|---|---|---|---|---|")
    print(row("click → callback received", to_callback))
    print(row("click → long-poll answered", to_long_poll))
    print(row(f"cancel → long-poll answered, {args.waiters} waiting", waiters["wake_ms"]))
    print()
    print(
        f"{waiters['waiters']} concurrent long-polls, uvicorn with {args.web_workers} worker(s): "
        f"web RSS {waiters['rss_before_mb']:.0f} MB idle, {waiters['rss_waiting_mb']:.0f} MB while all wait "
        f"({waiters['waiting']} were waiting at 10 s). The other {waiters['burst']} cancelled at once "
        f"(8 in flight): all answered within {waiters['drain_s']:.1f} s; "
        f"{waiters['answered cancelled']}/{waiters['waiters']} answered 'cancelled'."
    )


if __name__ == "__main__":
    main()
