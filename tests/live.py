"""A live Countersign for tests that drive it from outside: the ASGI app (broker/asgi.py, /mcp
included) under a real uvicorn on a free port, and approvers who answer by their email links."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from django.db import connection

from decisions.links import link_url
from decisions.models import ApprovalRequest, Decision
from tests.helpers import wait_for


@contextmanager
def serving(application, *, lifespan: str = "on") -> Iterator[str]:
    """The app under uvicorn in a daemon thread of this process; yields its base URL. With the
    lifespan on, as `uvicorn broker.asgi:application` runs it."""
    config = uvicorn.Config(application, host="127.0.0.1", port=0, lifespan=lifespan, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive())
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def clicks(address: str, decision_id: str, choice: str, **form: str) -> None:
    """What the approver's email button does: the one-click link, then its confirm form (with
    `detail__<key>` fields for edits, `note` for a note). Callable from any thread."""
    try:
        request = ApprovalRequest.objects.get(decision_id=decision_id, address=address)
        url = link_url(request, choice)
    finally:
        connection.close()
    page = httpx.post(url, data={"confirm": "yes", **form}, timeout=30)
    assert page.status_code == 200, page.text


def newest_decision(action_contains: str = "") -> Decision:
    """Wait for the agent's decision to exist (created by another process or thread)."""
    try:
        return wait_for(
            lambda: Decision.objects.filter(action__contains=action_contains).order_by("-created_at").first()
        )
    finally:
        connection.close()
