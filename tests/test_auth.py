"""Bearer API keys: who may call the API, what a key may do, how revocation and the per-key
rate limit behave, and that the key itself is never kept."""

import hashlib
import threading

import pytest
import redis

from broker.celery import app as celery_app
from decisions.models import Decision
from organizations.auth import ApiKeyRateThrottle, rate_limit_wait
from organizations.models import ApiKey
from organizations.services import api_key_create, api_key_revoke
from tests.conftest import ALICE, client_for

REFUND = {"action": "Refund order #1042", "approver": ALICE}


def assert_unauthorized(response):
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] in {"not_authenticated", "authentication_failed"}
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_authorization_header_is_401_with_a_challenge(db):
    response = client_for(None).get("/decisions")

    assert_unauthorized(response)
    assert response.json()["error"]["code"] == "not_authenticated"


def test_no_key_cannot_create(db):
    response = client_for(None).post("/decisions", REFUND, format="json")

    assert_unauthorized(response)
    assert Decision.objects.count() == 0


def test_wrong_key_is_401(acme_key):
    response = client_for("cs_" + "x" * 43).get("/decisions")

    assert_unauthorized(response)
    assert response.json()["error"]["code"] == "authentication_failed"


def test_key_with_a_typo_is_401(acme_key):
    raw = acme_key[1]
    response = client_for(raw[:-1] + ("A" if raw[-1] != "A" else "B")).get("/decisions")

    assert_unauthorized(response)


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer one two", "Bearer  cs_a cs_b", "Bearer cs_\xe9t\xe9"],
    ids=["no-key", "trailing-space", "extra-part", "two-keys", "non-ascii"],
)
def test_malformed_bearer_header_is_401(acme_key, header):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=header)

    assert_unauthorized(client.get("/decisions"))


@pytest.mark.parametrize("scheme", ["Basic", "Token", "ApiKey"])
def test_other_auth_schemes_are_401(acme_key, scheme):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {acme_key[1]}")

    assert_unauthorized(client.get("/decisions"))


def test_bearer_scheme_is_case_insensitive(acme_key):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"bearer {acme_key[1]}")

    assert client.get("/decisions").status_code == 200


def test_revoked_key_stops_working_on_the_very_next_request(acme_key, api):
    assert api.get("/decisions").status_code == 200

    api_key_revoke(key=acme_key[0])

    assert_unauthorized(api.get("/decisions"))
    assert_unauthorized(api.post("/decisions", REFUND, format="json"))
    assert Decision.objects.count() == 0


def test_revoking_one_key_leaves_the_others_working(acme, acme_key):
    _, other_raw = api_key_create(organization=acme, scopes=["decisions"], name="backup agent")

    api_key_revoke(key=acme_key[0])

    assert client_for(other_raw).get("/decisions").status_code == 200


def test_key_without_the_decisions_scope_is_403(acme):
    _, audit_only = api_key_create(organization=acme, scopes=["audit"], name="compliance export")
    client = client_for(audit_only)

    listed = client.get("/decisions")
    created = client.post("/decisions", REFUND, format="json")

    for response in (listed, created):
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == "permission_denied"
        assert "decisions" in error["message"]
    assert Decision.objects.count() == 0


def test_raw_key_is_never_stored(acme_key):
    key, raw = acme_key

    row = ApiKey.objects.filter(pk=key.pk).values().get()

    for name, value in row.items():
        assert raw not in str(value), name
    assert row["key_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert row["prefix"] == raw[:11]
    assert raw.startswith("cs_")


def test_last_used_at_is_set_on_use(acme_key, api):
    assert ApiKey.objects.get(pk=acme_key[0].pk).last_used_at is None

    api.get("/decisions")

    assert ApiKey.objects.get(pk=acme_key[0].pk).last_used_at is not None


def test_failed_authentication_does_not_touch_any_key(acme_key):
    client_for("cs_" + "x" * 43).get("/decisions")

    assert ApiKey.objects.get(pk=acme_key[0].pk).last_used_at is None


# --- rate limit -----------------------------------------------------------------------------


@pytest.fixture
def three_per_minute(monkeypatch):
    monkeypatch.setitem(ApiKeyRateThrottle.THROTTLE_RATES, "api_key", "3/min")


def test_rate_limit_answers_429_with_retry_after(api, three_per_minute):
    for _ in range(3):
        assert api.get("/decisions").status_code == 200

    response = api.get("/decisions")

    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert set(error) == {"code", "message", "fields"}
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60


def test_rate_limited_create_stores_nothing(api, three_per_minute):
    for _ in range(3):
        api.get("/decisions")

    response = api.post("/decisions", REFUND, format="json")

    assert response.status_code == 429
    assert Decision.objects.count() == 0


def test_rate_limit_is_per_key(acme, api, globex_api, three_per_minute):
    """Acme's busy agent must not lock out Acme's other agent, nor Globex."""
    _, other_acme_raw = api_key_create(organization=acme, scopes=["decisions"], name="second agent")
    for _ in range(3):
        api.get("/decisions")
    assert api.get("/decisions").status_code == 429

    assert client_for(other_acme_raw).get("/decisions").status_code == 200
    assert globex_api.get("/decisions").status_code == 200


def test_unauthenticated_requests_are_not_counted_against_a_key(api, three_per_minute):
    for _ in range(5):
        client_for("cs_" + "x" * 43).get("/decisions")

    assert api.get("/decisions").status_code == 200


class CountedPool(redis.ConnectionPool):
    """A real Redis pool that counts how many of it, and of its connections, get made."""

    pools = 0
    connections = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        CountedPool.pools += 1

    def make_connection(self):
        CountedPool.connections += 1
        return super().make_connection()


@pytest.mark.redis
def test_requests_in_threads_of_their_own_share_one_redis_connection(acme_key, settings, three_per_minute):
    # Under ASGI each request's sync code runs in a fresh thread, where Django's `cache` is a
    # new client: one Redis connection per request. The rate limiter keeps one for the process.
    location = settings.CACHES["default"]["LOCATION"]
    if not str(location).startswith("redis"):
        location = celery_app.conf.broker_url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": location,
            "OPTIONS": {"pool_class": CountedPool},
        }
    }
    CountedPool.pools = CountedPool.connections = 0
    waits = []

    for _ in range(4):
        thread = threading.Thread(target=lambda: waits.append(rate_limit_wait(acme_key[0])))
        thread.start()
        thread.join()

    assert (CountedPool.pools, CountedPool.connections) == (1, 1)
    # One budget all the same: the fourth request is over three a minute.
    assert waits[:3] == [None, None, None]
    assert waits[3] > 0
