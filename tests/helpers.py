"""Small helpers shared by tests."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from django.db import close_old_connections, connection


def wait_for(condition: Callable[[], object], *, timeout: float = 15.0, interval: float = 0.05):
    """Poll until condition() is truthy and return its value. The deadline only bounds a
    failing test; a passing one returns as soon as the condition holds."""
    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        if value := condition():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def race(*calls) -> list:
    """Run each call in its own thread, all released at once by a barrier. Returns what each
    returned or raised, in order: exceptions are returned so the test shows them instead of
    losing them in a thread. Each thread closes its own database connection."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()  # each thread's connection must not outlive the test

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
    return results


def seal() -> int:
    """Link every committed audit event into its chain now, as beat's sealer would within a
    second (audit/sealing.py). On PostgreSQL only other transactions' events can be sealed,
    so tests that read the sealed trail use `transactional_db`. Waits out a transaction of
    someone else's that is still running (the sealer's horizon), and returns events sealed."""
    from audit.models import AuditEvent
    from audit.sealing import seal_until_done

    sealed = seal_until_done()
    deadline = time.monotonic() + 15
    while AuditEvent.objects.filter(link__isnull=True).exists():
        if time.monotonic() > deadline:
            raise AssertionError("audit events still unsealed after 15 s")
        time.sleep(0.05)
        sealed += seal_until_done()
    return sealed


@contextmanager
def serving(application, **config) -> Iterator[str]:
    """An ASGI application under a real uvicorn server, on a free port, in a daemon thread of
    this process (one event loop that outlives requests, as in production). Yields its base URL.
    `config`: more of uvicorn.Config's options (http="h11", …)."""
    config = uvicorn.Config(
        application, host="127.0.0.1", port=0, lifespan="off", log_level="warning", access_log=False, **config
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), timeout=30)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def reload(decision):
    """The decision as the database has it now."""
    return type(decision).objects.get(pk=decision.pk)


def snapshot(decision) -> tuple:
    """Everything an inbound answer could change: compared before and after a refused one."""
    from audit.models import AuditEvent
    from notifications.models import Delivery

    decision = reload(decision)
    requests = tuple(decision.requests.order_by("pk").values_list("state", "choice", "note", "answered_by"))
    return (
        decision.status,
        decision.outcome,
        requests,
        AuditEvent.objects.filter(decision=decision).count(),
        Delivery.objects.filter(decision=decision).count(),
    )


def django_process(code: str, **environment: str):
    """Run `code` in a fresh Python process that starts Django with this environment added:
    what settings make of it at start-up, which a running test cannot redo."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "broker.settings", **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def keep_published_deliveries(monkeypatch) -> list[int]:
    """Keep the delivery ids this process hands to the broker, in order, instead of sending
    them: a transaction's deliveries go out as one task message, deliver(*ids)."""
    from notifications.tasks import deliver

    ids: list[int] = []
    monkeypatch.setattr(deliver, "delay", lambda *delivery_ids: ids.extend(delivery_ids))
    return ids


def field_values(instance) -> dict:
    """Every column of a model instance as loaded: to compare two reads of the same row."""
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}
