"""Do one organization's creates still serialize on a lock? (issue 13)

At the database level: pgbench replays, as one transaction each, the very SQL one
POST /decisions executes (captured from a real request, as bench/api_throughput.py does), with
8 clients, first all in one organization, then spread over 8 organizations. With no lock
shared by an organization's writers the two figures match (target: within 10 %).

For contrast it runs both again with what audit writes did before this change added to the
same transaction: SELECT … FOR UPDATE of the organization's chain-head row before the audit
inserts and its UPDATE after them, held to COMMIT (a table of its own here, bench_chain_head).

    python bench/audit_contention.py [--seconds 20] [--clients 8]

Needs PostgreSQL, Redis and pgbench on 127.0.0.1. Figures, not pass/fail.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.api_throughput import capture_create_sql, pgbench_script
from bench.stack import bench_env, fresh_database, new_api_key, pgbench

DATABASE = "countersign_bench_contention"
ORGANIZATIONS = 8
LOCK = 'SELECT "seq", "hash" FROM bench_chain_head WHERE "organization_id" = {org} FOR UPDATE;'
MOVE = 'UPDATE bench_chain_head SET "seq" = "seq" + 1 WHERE "organization_id" = {org};'


def transaction_script(queries: list[str], organization_id: int, *, chain_head_lock: bool) -> str:
    lines = pgbench_script(queries).splitlines()
    body = []
    for line in lines:
        locked = any(statement.startswith('SELECT "seq", "hash" FROM bench_chain_head') for statement in body)
        if chain_head_lock and line.startswith('INSERT INTO "audit_auditevent"') and not locked:
            body.append(LOCK.format(org=organization_id))
        body.append(line)
        if chain_head_lock and line.startswith('INSERT INTO "audit_auditevent"'):
            body.append(MOVE.format(org=organization_id))
    return "\n".join(body) + "\n"  # BEGIN … COMMIT are in the captured SQL


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    env = bench_env(DATABASE, AUDIT_CHECKPOINT_DIR="")
    os.environ.update(env)
    fresh_database(env, DATABASE)
    keys = [new_api_key(env, f"bench{n}") for n in range(ORGANIZATIONS)]
    captured = [capture_create_sql(key) for key in keys]
    from organizations.models import Organization  # after capture_create_sql's django.setup()

    organization_ids = list(Organization.objects.order_by("pk").values_list("pk", flat=True))
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            DATABASE,
            "-qc",
            "CREATE TABLE bench_chain_head (organization_id bigint PRIMARY KEY, seq bigint, hash text);"
            "INSERT INTO bench_chain_head SELECT id, 0, '' FROM organizations_organization",
        ],
        check=True,
        env=env,
    )

    print(
        f"creates/s at the database level, {args.clients} clients, {args.seconds} s each "
        "(pgbench replaying one POST /decisions' SQL per transaction)"
    )
    for label, lock in (("now (no organization lock)", False), ("before (chain-head row lock)", True)):
        one = pgbench(
            env,
            [transaction_script(captured[0], organization_ids[0], chain_head_lock=lock)],
            database=DATABASE,
            clients=args.clients,
            seconds=args.seconds,
        )["tps"]
        spread = pgbench(
            env,
            [
                transaction_script(q, o, chain_head_lock=lock)
                for q, o in zip(captured, organization_ids, strict=True)
            ],
            database=DATABASE,
            clients=args.clients,
            seconds=args.seconds,
        )["tps"]
        print(
            f"  {label:30}  1 organization {one:7.0f}/s   {ORGANIZATIONS} organizations {spread:7.0f}/s   "
            f"ratio {one / spread:.2f}"
        )


if __name__ == "__main__":
    main()
