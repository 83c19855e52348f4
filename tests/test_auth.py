"""Bearer API keys: who may call the API, what a key may do, how revocation and the per-key
rate limit behave, and that the key itself is never kept."""

import hashlib

import pytest

from decisions.models import Decision
from organizations.auth import ApiKeyRateThrottle
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
