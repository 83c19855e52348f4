"""GET /healthz: what a load balancer or an uptime check asks. No key needed."""

from contextlib import contextmanager

import pytest

from broker.celery import app as broker_celery_app

# Nothing listens on port 1: a connection there is refused at once.
UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


@contextmanager
def broker_unreachable(monkeypatch):
    """Point the app at a broker that does not answer, until the block ends."""
    original = broker_celery_app.conf.broker_url
    with monkeypatch.context() as outage:
        # WHY both: Celery's conf.broker_url prefers the CELERY_BROKER_URL environment variable
        # (set when the tests run against Redis) over anything assigned to it.
        outage.setenv("CELERY_BROKER_URL", UNREACHABLE_BROKER)
        broker_celery_app.conf.broker_url = UNREACHABLE_BROKER
        try:
            assert broker_celery_app.conf.broker_url == UNREACHABLE_BROKER
            yield
        finally:
            broker_celery_app.conf.broker_url = original
    assert broker_celery_app.conf.broker_url == original


@pytest.fixture
def broker_down(monkeypatch):
    with broker_unreachable(monkeypatch):
        yield


def test_healthz_is_ok_when_the_database_and_the_broker_answer(client, db):
    # when: an uptime check calls without any credentials
    response = client.get("/healthz")

    # then
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_is_503_when_the_broker_is_unreachable(client, db, broker_down):
    # when
    response = client.get("/healthz")

    # then: the load balancer takes this instance out, and the body says why
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "broker": "unreachable"}


def test_healthz_recovers_once_the_broker_is_back(client, db, monkeypatch):
    # given: it answered 503 while the broker was down
    with broker_unreachable(monkeypatch):
        assert client.get("/healthz").status_code == 503

    # when: the broker is back
    response = client.get("/healthz")

    # then: no failure (or dead connection) from the earlier call is cached
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
