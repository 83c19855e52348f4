"""Shared fixtures. Named actors: Acme (our tenant) and Globex (the other tenant); alice and
bob approve, carol is the backup.

Tests marked `postgres` or `redis` need those servers. Elsewhere they are skipped; in CI
(CI=true) a missing server fails the run instead, so CI can never go green by skipping them.
"""

import os
import threading

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.core.cache import cache
from django.db import connection, connections
from django.test import TransactionTestCase
from rest_framework.test import APIClient

from audit.guard import guard_lifted
from broker.celery import app as celery_app
from organizations.services import api_key_create, organization_get_or_create
from tests.browser import CHROMIUM, CHROMIUM_ARGS

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"


def pytest_configure(config):
    if "CELERY_BROKER_URL" not in os.environ:
        # Without a configured broker, whatever a committed test publishes goes to memory,
        # not to var/ where `make dev`'s worker would find it.
        celery_app.conf.broker_url = "memory://"

    # Django empties the database after each transactional test with TRUNCATE (PostgreSQL)
    # or DELETE (SQLite), which the audit table's guard rightly refuses. Lift the guard for
    # that flush only, as a database owner could; every test itself runs with it in place.
    fixture_teardown = TransactionTestCase._fixture_teardown

    def _fixture_teardown(self):
        with guard_lifted(connections["default"]):
            fixture_teardown(self)

    TransactionTestCase._fixture_teardown = _fixture_teardown


def _redis_broker_reachable() -> bool:
    url = celery_app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        return False
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


def _missing(what: str):
    if IN_CI:
        pytest.fail(f"CI must run this test against {what}, and it is not available.")
    pytest.skip(f"needs {what}")


@pytest.fixture(autouse=True)
def _required_services(request):
    if request.node.get_closest_marker("postgres"):
        request.getfixturevalue("db")
        if connection.vendor != "postgresql":
            _missing("PostgreSQL (DATABASE_URL=postgres://…)")
    if request.node.get_closest_marker("redis") and not _redis_broker_reachable():
        _missing("Redis (CELERY_BROKER_URL=redis://…)")


@pytest.fixture(autouse=True)
def _checkpoints_in_tmp(_fresh_cache, settings, tmp_path):
    # The storage sink writes each test's audit checkpoints to its own directory, not var/.
    # (After _fresh_cache: `settings` is then restored before that clears the cache, so a
    # test that points CACHES at a dead server gets the real one back first.)
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_checkpoints": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "checkpoints")},
        },
    }


@pytest.fixture(autouse=True)
def _fresh_cache():
    # The rate limiter counts in the cache; each test starts from zero.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def acme(db):
    return organization_get_or_create(slug="acme", name="Acme Corp")[0]


@pytest.fixture
def globex(db):
    return organization_get_or_create(slug="globex", name="Globex")[0]


@pytest.fixture
def acme_key(acme):
    """(ApiKey, raw key) with both scopes."""
    return api_key_create(organization=acme, scopes=["decisions", "audit"], name="acme agent")


@pytest.fixture
def globex_key(globex):
    return api_key_create(organization=globex, scopes=["decisions", "audit"], name="globex agent")


def client_for(raw_key: str | None) -> APIClient:
    client = APIClient()
    if raw_key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def api(acme_key) -> APIClient:
    """Acme's agent, talking JSON to the API."""
    return client_for(acme_key[1])


@pytest.fixture
def globex_api(globex_key) -> APIClient:
    return client_for(globex_key[1])


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker, in a thread of this process, consuming from the configured broker
    (Redis in CI). Mail sent by its tasks lands in django.core.mail.outbox."""
    celery_app.control.purge()

    def close_connections(**kwargs):
        # The worker thread's database connections must not outlive the test.
        if threading.current_thread() is not threading.main_thread():
            connections.close_all()

    task_postrun.connect(close_connections, weak=False)
    try:
        with start_worker(
            celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10
        ) as worker:
            yield worker
    finally:
        task_postrun.disconnect(close_connections)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module. Skipped without it, except in CI."""
    if not CHROMIUM.exists():
        # The rule of conftest's _missing: a skip on a laptop, a failure in CI.
        if IN_CI:
            pytest.fail(f"CI must run the browser tests, and {CHROMIUM} is missing (.ci/run installs it).")
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    # Playwright's sync API keeps an asyncio loop marked as running in this thread, so Django
    # takes every ORM call the test makes (fixtures, assertions, the flush) for one made from
    # async code and refuses it. Nothing here is async: the ORM runs between browser calls.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
