"""PostgreSQL restarting or failing over under a running web process (uvicorn, its own process,
its own connection pool): the connections it had pooled are dead, and for a while no new one
can be made. Every request then gets a working connection or a clear 503 with Retry-After
(JSON for the API, a page for approvers), never a 500; an approver's confirm is never lost
without a word, and nothing is half-written.

The web process reaches PostgreSQL through a TCP proxy in this test (tests/tcp_proxy.py), so
the test can refuse its connections and let them through again; its backends carry the
application name WEB_APP_NAME. Backends are terminated with pg_terminate_backend from a
connection of the test's own, and only those of this test's database.
"""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest
from django.db import connection, connections

from audit.models import AuditEvent
from decisions.links import link_token
from decisions.models import ApprovalRequest, Decision, Status
from decisions.services import DecisionSpec, decision_create
from tests.conftest import ALICE
from tests.helpers import keep_published_deliveries, wait_for
from tests.smtp_sink import free_port
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
WEB_APP_NAME = "countersign-web-under-test"
OUTAGE_SECONDS = 15
# The longest any one request may take: the pool's wait for a connection, and some slack.
REQUEST_TIMEOUT = 30


def own_connection() -> psycopg.Connection:
    """A connection of the test's own to its database, outside Django and its pool."""
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        autocommit=True,
    )


def web_backends() -> int:
    with own_connection() as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s",
            [WEB_APP_NAME],
        ).fetchone()[0]


def terminate_every_backend() -> int:
    """Terminate every backend of this test's database but the one doing it, as a restart or
    a failover does, and wait (up to 10 s each) until they are gone. The test's own Django
    connection is among them: it is closed here, and the next query takes a fresh one."""
    with own_connection() as killer:
        killed = killer.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    connections.close_all()
    return killed


class Web:
    """The web process: uvicorn serving the app, its database reached through the proxy."""

    def __init__(self, proxy: TcpProxy, secret_key: str, logs: Path) -> None:
        db = connection.settings_dict
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs = logs
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in {"CACHE_URL", "DEBUG", "EMAIL_BACKEND", "EMAIL_URL"}
        }
        env.update(
            DJANGO_SETTINGS_MODULE="broker.settings",
            DATABASE_URL=f"postgres://{quote(db['USER'] or 'postgres')}@127.0.0.1:{proxy.port}/{db['NAME']}",
            PGAPPNAME=WEB_APP_NAME,  # libpq names its backends so: the test can count them
            PGPASSWORD=db["PASSWORD"] or "",
            # The process's own in-memory broker: what it publishes after commit stays in it.
            CELERY_BROKER_URL="memory://",
            SECRET_KEY=secret_key,  # the approval links the test signs must be valid there
            EMAIL_URL="locmem",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        with logs.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "uvicorn", "broker.asgi:application"),
                    *("--host", "127.0.0.1", "--port", str(self.port)),
                    *("--no-access-log", "--log-level", "warning"),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._healthy, timeout=60, interval=0.2)

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, f"the web process exited:\n{self.logs.read_text()}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def client(self, raw_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {raw_key}"} if raw_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=REQUEST_TIMEOUT)


@pytest.fixture
def proxy():
    proxy = TcpProxy(int(connection.settings_dict["PORT"] or 5432))
    yield proxy
    proxy.close()


@pytest.fixture
def web(transactional_db, proxy, settings, tmp_path):
    # transactional_db: the web process sees only what the test has committed. It is stopped
    # before the database is emptied (this fixture depends on transactional_db, so it ends first).
    web = Web(proxy, settings.SECRET_KEY, tmp_path / "web.log")
    yield web
    web.stop()


@pytest.fixture
def published(monkeypatch) -> list[int]:
    """Delivery tasks this process hands to the broker; kept here, not sent to a shared broker."""
    return keep_published_deliveries(monkeypatch)


@pytest.fixture
def refund(acme_key, published) -> tuple[Decision, str]:
    """Acme's agent asked alice to sign off a refund: the decision and her Approve link's path."""
    decision, created = decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(
            action="Refund order #1042 for $120",
            details={"amount": 120},
            stages=[{"approvers": [ALICE], "quorum": "any"}],
            timeout_minutes=30,
        ),
    )
    assert created
    request = ApprovalRequest.objects.get(decision=decision, address=ALICE)
    return decision, f"/a/{link_token(request, 'approve')}"


NEW_REFUND = {"action": "Refund order #1043 for $80", "approver": ALICE, "timeout_minutes": 30}


def assert_json_503(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "unavailable"
    assert int(response.headers["Retry-After"]) > 0


def assert_page_503(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("text/html")
    assert int(response.headers["Retry-After"]) > 0
    assert "try again" in response.text.lower()


def test_after_every_backend_is_terminated_each_request_gets_a_working_connection(web, acme_key, refund):
    decision, approve = refund
    agent, alice = web.client(acme_key[1]), web.client()
    # given: the web process has pooled several connections (a burst of concurrent requests)
    with ThreadPoolExecutor(8) as burst:
        answers = list(burst.map(lambda _: agent.get(f"/decisions/{decision.pk}").status_code, range(16)))
    assert answers == [200] * 16
    pooled = web_backends()
    assert pooled >= 2, "the burst did not make the pool grow: the test would test less"

    # when: PostgreSQL drops every connection (a restart, a failover), and is back at once
    assert terminate_every_backend() > pooled  # the test's own connection besides
    assert web_backends() == 0

    # then: the very next requests, API and approval pages alike, are served
    read = agent.get(f"/decisions/{decision.pk}")
    assert read.status_code == 200, read.text[:500]
    page = alice.get(approve)
    assert page.status_code == 200, page.text[:500]
    assert "Confirm: Approve" in page.text
    created = agent.post("/decisions", json=NEW_REFUND)
    assert created.status_code == 201, created.text[:500]
    confirmed = alice.post(approve, data={"confirm": "yes", "note": "ok"})
    assert confirmed.status_code == 200, confirmed.text[:500]
    decision.refresh_from_db()
    assert decision.status == Status.APPROVED
    assert decision.outcome["by"] == ALICE


def test_while_postgresql_refuses_connections_every_request_is_a_503_and_then_works_again(
    web, proxy, acme_key, refund
):
    decision, approve = refund
    agent, alice = web.client(acme_key[1]), web.client()
    assert agent.get(f"/decisions/{decision.pk}").status_code == 200  # the pool holds a connection
    events_before = AuditEvent.objects.count()

    # when: PostgreSQL goes away: its connections cut, new ones refused, for OUTAGE_SECONDS
    proxy.down()
    down_at = time.monotonic()

    # then: each kind of request gets a clear 503 with Retry-After (at once, side by side: each
    # may wait out the pool's timeout), and alice is told her answer was not taken
    with ThreadPoolExecutor(4) as during:
        read = during.submit(agent.get, f"/decisions/{decision.pk}")
        create = during.submit(agent.post, "/decisions", json=NEW_REFUND)
        page = during.submit(alice.get, approve)
        confirm = during.submit(alice.post, approve, data={"confirm": "yes", "note": "Refund it."})
    assert_json_503(read.result())
    assert_json_503(create.result())
    assert_page_503(page.result())
    refused = confirm.result()
    assert_page_503(refused)
    # the page offers to send the same answer again, with what she typed
    assert 'name="note" value="Refund it."' in refused.text
    assert time.monotonic() - down_at < OUTAGE_SECONDS, "the 503s came too late to test the outage"

    # when: PostgreSQL is back
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    proxy.up()
    up_at = time.monotonic()

    # then: requests work again within seconds; until then each one is a 503, never a 500
    def served() -> bool:
        response = agent.get(f"/decisions/{decision.pk}")
        if response.status_code == 503:
            assert_json_503(response)
            return False
        assert response.status_code == 200, response.text[:500]
        return True

    wait_for(served, timeout=20, interval=0.2)
    recovery = time.monotonic() - up_at
    assert recovery < 5, f"requests failed for {recovery:.1f} s after PostgreSQL was back"

    # and nothing was written while it was away: no decision, no answer, no audit event
    assert Decision.objects.count() == 1
    decision.refresh_from_db()
    assert decision.status == Status.PENDING
    assert AuditEvent.objects.count() == events_before

    # when alice tries again, her answer is taken
    again = alice.post(approve, data={"confirm": "yes", "note": "Refund it."})
    assert again.status_code == 200, again.text[:500]
    decision.refresh_from_db()
    assert decision.status == Status.APPROVED
    assert decision.outcome["note"] == "Refund it."
