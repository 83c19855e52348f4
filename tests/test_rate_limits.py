"""The sliding window behind API_RATE_LIMIT (organizations.rate_limits), in a real Redis, with
the clock given explicitly: DRF's rule (at most `limit` in any `duration`, refusals not
counted, wait until the oldest request that matters leaves) in one round trip."""

import uuid

import pytest
import redis
from redis.connection import Connection

from broker.celery import app as celery_app
from organizations.auth import rate_limit_window_counter
from organizations.rate_limits import SlidingWindowCounter

pytestmark = pytest.mark.redis


class CountedConnection(Connection):
    """A real Redis connection that counts the requests it sends (pipelined or not)."""

    sent = 0

    def send_packed_command(self, command, check_health=True):
        CountedConnection.sent += 1
        return super().send_packed_command(command, check_health)


@pytest.fixture
def client():
    client = redis.Redis.from_url(celery_app.conf.broker_url, connection_class=CountedConnection)
    yield client
    client.close()


@pytest.fixture
def window(client):
    key = f"test:rate_limit:{uuid.uuid4().hex}"
    yield key
    client.delete(key)


def test_allows_the_limit_in_any_window_then_says_how_long_to_wait(client, window):
    counter = SlidingWindowCounter(client)

    assert [counter.hit(window, limit=3, duration=60, now=t) for t in (1000, 1010, 1020)] == [None] * 3
    assert counter.hit(window, limit=3, duration=60, now=1030) == pytest.approx(30)  # until 1000 + 60
    # A refused request is not counted: at 1060 the request of 1000 has left, so one fits.
    assert counter.hit(window, limit=3, duration=60, now=1060) is None
    assert counter.hit(window, limit=3, duration=60, now=1061) == pytest.approx(9)  # until 1010 + 60


def test_requests_at_the_same_instant_each_count(client, window):
    counter = SlidingWindowCounter(client)

    assert [counter.hit(window, limit=2, duration=1, now=5.0) for _ in range(3)] == [None, None, 1.0]


def test_a_lowered_limit_waits_until_enough_requests_have_left(client, window):
    counter = SlidingWindowCounter(client)
    for t in (0, 10, 20, 30):
        counter.hit(window, limit=10, duration=60, now=t)

    # Four in the window, two allowed: three must leave (0, 10 and 20) for one more to fit.
    assert counter.hit(window, limit=2, duration=60, now=40) == pytest.approx(40)


def test_one_round_trip_a_request_and_the_window_expires(client, window):
    counter = SlidingWindowCounter(client)
    counter.hit(window, limit=5, duration=60, now=0)  # loads the script into Redis if need be

    CountedConnection.sent = 0
    counter.hit(window, limit=5, duration=60, now=1)
    counter.hit(window, limit=1, duration=60, now=2)  # refused

    assert CountedConnection.sent == 2
    assert 0 < client.pttl(window) <= 60_000


def test_windows_are_counted_apart(client, window):
    counter = SlidingWindowCounter(client)
    other = window + ":other"
    try:
        assert counter.hit(window, limit=1, duration=60, now=0) is None
        assert counter.hit(other, limit=1, duration=60, now=0) is None
        assert counter.hit(window, limit=1, duration=60, now=1) is not None
    finally:
        client.delete(other)


def test_the_api_limit_counts_in_redis_when_the_cache_is_redis(settings):
    location = str(settings.CACHES["default"]["LOCATION"])
    if not location.startswith("redis"):
        pytest.skip("the cache is not Redis here")

    assert isinstance(rate_limit_window_counter(), SlidingWindowCounter)
