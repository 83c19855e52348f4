"""How fast, and in how much memory, does GET /audit/export.csv stream a long trail? (issue 7)

Fills a fresh PostgreSQL database with 1 000 000 audit events of one organization (raw SQL,
generate_series: plausible seq/prev_hash/hash values that need not verify) over 100 000
decisions, starts the real stack (uvicorn, Celery worker, Redis), downloads the CSV with
httpx and reports rows/s, total time, time to first byte and the peak resident memory of the
web process tree during the download (sampled every 100 ms).

    python bench/audit_export.py [--rows 1000000] [--web-workers 1]

Needs PostgreSQL and Redis on 127.0.0.1. Figures, not pass/fail: it prints them.
Targets (issue 7): under 20 s and under 150 MB.
"""

import argparse
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stack import bench_env, fresh_database, manage, new_api_key, rss_mb, running_stack

DATABASE = "countersign_bench_audit_export"
PORT = 8766
EVENTS_PER_DECISION = 10

# A template decision made by the real service (so every column the model has is filled),
# in an organization of its own; the bench organization's decisions are copies of it.
TEMPLATE = """
from decisions.services import DecisionSpec, decision_create
from organizations.services import api_key_create, organization_get_or_create
org, _ = organization_get_or_create(slug="template")
key, _ = api_key_create(organization=org, scopes=["decisions"])
stages = [{"approvers": ["alice@example.com"], "quorum": "any"}]
decision, _ = decision_create(api_key=key, spec=DecisionSpec(action="template", stages=stages))
print(decision.pk)
"""

# Ten events per decision, cycling; the answer carries a note a spreadsheet would run as a
# formula, so neutralisation is part of the measured work.
EVENTS = [
    ("decision.created", "api_key:cs_benchkey", "api"),
    ("approver.asked", "system", "email"),
    ("approver.asked", "system", "slack"),
    ("notification.sent", "system", "email"),
    ("notification.sent", "system", "slack"),
    ("link.viewed", "alice@example.com", "email"),
    ("decision.answered", "alice@example.com", "email"),
    ("decision.resolved", "alice@example.com", "email"),
    ("callback.delivered", "system", "callback"),
    ("decision.reminded", "system", ""),
]
EVENTS_SQL = """
INSERT INTO audit_auditevent
    (organization_id, seq, created_at, decision_id, event, actor, channel, payload, prev_hash, hash)
SELECT
    %(org)s,
    g,
    timestamptz '2030-01-01 00:00:00+00' + g * interval '1 second' + (g %% 997) * interval '1 microsecond',
    'dec_bench' || lpad(((g - 1) / %(per)s + 1)::text, 10, '0'),
    (%(events)s::text[])[k],
    (%(actors)s::text[])[k],
    (%(channels)s::text[])[k],
    CASE k
        WHEN 1 THEN '{"action":"Refund order #' || g || '","action_hash":"' || md5(g::text)
            || md5(g::text) || '","expires_at":"2030-01-02T00:00:00Z","urgency":"normal"}'
        WHEN 2 THEN '{"address":"alice@example.com","group":"","level":0,"stage":0}'
        WHEN 3 THEN '{"address":"slack:U0BOB","group":"finance","level":0,"stage":0}'
        WHEN 6 THEN '{"choice":"approve","ip":"203.0.113.' || (g %% 250) || '","user_agent":"'
            || %(ua)s || '"}'
        WHEN 7 THEN '{"address":"alice@example.com","choice":"approve","edited_details":null,'
            || '"ip":"203.0.113.' || (g %% 250) || '","note":"=ok, checked invoice ' || g
            || '","text":"","user_agent":"' || %(ua)s || '"}'
        WHEN 8 THEN '{"action_hash":"' || md5(g::text) || md5(g::text) || '","choice":"approve",'
            || '"note":"=ok, checked invoice ' || g || '","status":"approved"}'
        ELSE '{"delivery_id":' || g || ',"kind":"email","purpose":"ask"}'
    END,
    CASE WHEN g = 1 THEN repeat('0', 64) ELSE encode(sha256((g - 1)::text::bytea), 'hex') END,
    encode(sha256(g::text::bytea), 'hex')
FROM (SELECT g, (g - 1) %% %(per)s + 1 AS k FROM generate_series(1, %(rows)s) AS g) AS numbered
"""
USER_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15"


def fill(env: dict, rows: int) -> None:
    template_id = manage(env, "shell", "-c", TEMPLATE).strip().splitlines()[-1]
    manage(env, "create_api_key", "--org", "bench", "--scopes", "audit")
    decisions = (rows + EVENTS_PER_DECISION - 1) // EVENTS_PER_DECISION
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        org = conn.execute("SELECT id FROM organizations_organization WHERE slug = 'bench'").fetchone()[0]
        columns = [
            name
            for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'decisions_decision' "
                "ORDER BY ordinal_position"
            )
            if name not in ("id", "organization_id", "action", "created_at")
        ]
        copied = ", ".join(f"t.{name}" for name in columns)
        started = time.perf_counter()
        conn.execute(
            f"INSERT INTO decisions_decision (id, organization_id, action, created_at, {', '.join(columns)}) "  # noqa: S608
            f"SELECT 'dec_bench' || lpad(g::text, 10, '0'), %(org)s, 'Refund order #' || g, "
            f"timestamptz '2030-01-01 00:00:00+00' + g * interval '10 seconds', {copied} "
            "FROM decisions_decision t, generate_series(1, %(decisions)s) AS g WHERE t.id = %(template)s",
            {"org": org, "decisions": decisions, "template": template_id},
        )
        conn.execute(
            EVENTS_SQL,
            {
                "org": org,
                "rows": rows,
                "per": EVENTS_PER_DECISION,
                "events": [event for event, _, _ in EVENTS],
                "actors": [actor for _, actor, _ in EVENTS],
                "channels": [channel for _, _, channel in EVENTS],
                "ua": USER_AGENT,
            },
        )
        conn.execute(
            "INSERT INTO audit_chainhead (organization_id, seq, hash) "
            "VALUES (%(org)s, %(rows)s, encode(sha256(%(rows)s::text::bytea), 'hex'))",
            {"org": org, "rows": rows},
        )
        conn.execute("VACUUM ANALYZE decisions_decision")
        conn.execute("VACUUM ANALYZE audit_auditevent")
        elapsed = time.perf_counter() - started
        print(f"filled {rows:,} audit events over {decisions:,} decisions in {elapsed:.1f} s")


class PeakRss:
    """Samples the RSS of a process tree every 100 ms in a thread; keeps the highest."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))


def download(base: str, key: str) -> dict:
    lines = size = 0
    head = tail = b""
    started = time.perf_counter()
    first_byte = None
    with (
        httpx.Client(base_url=base, timeout=httpx.Timeout(300, connect=10)) as client,
        client.stream("GET", "/audit/export.csv", headers={"Authorization": f"Bearer {key}"}) as response,
    ):
        response.raise_for_status()
        for chunk in response.iter_raw():
            if first_byte is None:
                first_byte = time.perf_counter() - started
                head = chunk[:400]
            size += len(chunk)
            lines += chunk.count(b"\n")  # the bench's cells hold no line breaks
            tail = (tail + chunk)[-2000:]
    return {
        "seconds": time.perf_counter() - started,
        "first_byte": first_byte or 0.0,
        "rows": lines - 1,  # the header
        "bytes": size,
        "header": head.split(b"\r\n")[0].decode("utf-8-sig"),
        "last_row": tail.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1].decode()[:160],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--web-workers", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="reuse the filled database of a previous run")
    args = parser.parse_args()

    env = bench_env(DATABASE)
    if not args.keep:
        fresh_database(env, DATABASE)
        fill(env, args.rows)
    key = new_api_key(env, "bench", "--scopes", "audit")

    with running_stack(env, port=PORT, web_workers=args.web_workers) as web:
        time.sleep(1)
        idle = rss_mb(web.pid)
        with PeakRss(web.pid) as memory:
            result = download(f"http://127.0.0.1:{PORT}", key)
        after = rss_mb(web.pid)

    assert result["rows"] == args.rows, result
    print()
    print(f"header:   {result['header']}")
    print(f"last row: {result['last_row']}…")
    print()
    print(f"| GET /audit/export.csv, {args.rows:,} rows, {args.web_workers} uvicorn worker(s) | |")
    print("|---|---|")
    print(f"| total time | {result['seconds']:.1f} s |")
    print(f"| rows/s | {result['rows'] / result['seconds']:,.0f} |")
    print(
        f"| size | {result['bytes'] / 1e6:,.0f} MB ({result['bytes'] / 1e6 / result['seconds']:.1f} MB/s) |"
    )
    print(f"| time to first byte | {result['first_byte'] * 1000:.0f} ms |")
    print(f"| web RSS: idle → peak during export → after | {idle:.0f} → {memory.peak:.0f} → {after:.0f} MB |")


if __name__ == "__main__":
    main()
