"""A real Countersign stack for benchmarks: PostgreSQL, Redis, uvicorn web workers and a
Celery worker, each a process of its own, on this machine. Used by the bench scripts."""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def bench_env(database: str, **extra: str) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{database}",
        CELERY_BROKER_URL=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/5"),
        CACHE_URL=os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/4"),
        SECRET_KEY="bench-secret-key-not-for-production",
        CALLBACK_ALLOW_PRIVATE="1",
        EMAIL_URL="locmem",  # the emails are real, just kept in memory: no console flood
        # Per second, not per minute: DRF keeps a timestamp per request in the window and pickles
        # the list on every request; a minute of them at full speed is thousands.
        API_RATE_LIMIT="1000000/s",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="broker.settings",
        **extra,
    )
    return env


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def new_api_key(env: dict, organization: str, *options: str) -> str:
    """A new API key for `organization` (created if need be), as create_api_key prints it last."""
    return manage(env, "create_api_key", "--org", organization, *options).strip().splitlines()[-1]


def fresh_database(env: dict, name: str) -> None:
    """A new PostgreSQL database, migrated, and empty benchmark Redis databases: tasks left
    queued by an earlier run (the API benchmark runs without a worker) would otherwise be
    worked through first."""
    for url in (env["CELERY_BROKER_URL"], env["CACHE_URL"]):
        redis.Redis.from_url(url).flushdb()
    for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, env=env)
    manage(env, "migrate", "--noinput")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            continue
        pids.extend(int(child) for child in children)
    return total / 1024


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its living descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pids = 0, [pid]
    while pids:
        current = pids.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        pids.extend(int(child) for child in children)
    return total / tick


# How the web tier can be served: broker/asgi.py under uvicorn, as it runs (the JSON API through
# Django's WSGI handler, the long-poll and /mcp on the event loop); for comparison, everything
# through Django's ASGI handler under uvicorn (bench/django_asgi_only.py, the path before issue
# 14); and WSGI under gunicorn's process pool, when gunicorn is installed (`pip install gunicorn`).
SERVERS = ("uvicorn", "uvicorn-asgi-only") + (("gunicorn",) if importlib.util.find_spec("gunicorn") else ())

_UVICORN_APPS = {
    "uvicorn": "broker.asgi:application",
    "uvicorn-asgi-only": "bench.django_asgi_only:application",
}


def web_command(server: str, *, port: int, workers: int) -> list[str]:
    if server in _UVICORN_APPS:
        return [
            PYTHON,
            "-m",
            "uvicorn",
            _UVICORN_APPS[server],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "broker.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]


@contextmanager
def running_stack(
    env: dict,
    *,
    port: int,
    web_workers: int = 2,
    celery_concurrency: int = 2,
    server: str = "uvicorn",
    celery_pool: str = "prefork",
):
    """Start web (uvicorn, or gunicorn) and a Celery worker (none with celery_concurrency=0);
    yield the web process; stop them."""
    procs = {
        "web": subprocess.Popen(
            web_command(server, port=port, workers=web_workers),
            cwd=ROOT,
            env=env,
            start_new_session=True,
        ),
    }
    if celery_concurrency:
        procs["worker"] = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "broker",
                "worker",
                "--loglevel",
                "WARNING",
                "--concurrency",
                str(celery_concurrency),
                "--pool",
                celery_pool,
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("web did not start")
            time.sleep(0.2)
        time.sleep(2)  # let the Celery worker connect
        procs["web"].worker = procs.get("worker")  # for the scripts that measure the worker too
        yield procs["web"]
    finally:
        for proc in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def pgbench(env: dict, scripts: list[str], *, database: str, clients: int, seconds: int) -> dict:
    """pgbench running `scripts` (equally weighted, one transaction each) against `database`:
    tps, average latency, failed transactions. A client pgbench had to abort fails the run."""
    files = []
    for script in scripts:
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
            handle.write(script)
        files.append(handle.name)
    try:
        done = subprocess.run(
            ["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-n"]
            + [arg for name in files for arg in ("-f", f"{name}@1")]
            + ["-c", str(clients), "-j", "2", "-T", str(seconds), database],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    finally:
        for name in files:
            os.unlink(name)
    failed = int((re.search(r"number of failed transactions: (\d+)", done.stdout) or [0, 0])[1])
    if done.returncode or failed:
        raise RuntimeError(done.stdout + done.stderr[-2000:])
    return {
        "tps": float(re.search(r"tps = ([\d.]+)", done.stdout).group(1)),
        "latency_ms": float(re.search(r"latency average = ([\d.]+) ms", done.stdout).group(1)),
        "failed": failed,
    }
