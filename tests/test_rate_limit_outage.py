"""The rate limiter counts in the shared cache. When that cache (Redis) is down, agents must
still be served: a cache outage must not become an API outage."""

import pytest

from decisions.models import Decision


@pytest.fixture
def unreachable_cache(settings):
    # Port 1 on loopback: connection refused at once, like a Redis that is down.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }


def test_agent_can_still_create_a_decision_while_the_cache_is_down(api, unreachable_cache):
    response = api.post(
        "/decisions", {"action": "Refund $20", "approver": "alice@example.com"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert Decision.objects.filter(pk=response.json()["id"]).exists()
