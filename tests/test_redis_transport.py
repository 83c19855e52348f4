"""broker.redis_transport: kombu's Redis transport, publishing through one Redis client per
channel instead of building one per message. Against the test run's Redis broker."""

import pytest
from kombu import Connection

from broker.celery import app as celery_app
from broker.redis_transport import Transport

pytestmark = pytest.mark.redis

QUEUE = "countersign-test-redis-transport"


@pytest.fixture
def connection():
    with Connection(celery_app.conf.broker_url, transport=Transport) as conn:
        conn.SimpleQueue(QUEUE).clear()
        try:
            yield conn
        finally:
            conn.SimpleQueue(QUEUE).clear()


def publish(conn: Connection, body: dict) -> None:
    conn.Producer(conn.default_channel).publish(body, routing_key=QUEUE, serializer="json")


def received(conn: Connection, count: int) -> list:
    with conn.SimpleQueue(QUEUE) as queue:
        messages = [queue.get(timeout=5) for _ in range(count)]
    for message in messages:
        message.ack()
    return [message.payload for message in messages]


def test_the_app_publishes_through_it_when_the_broker_is_redis():
    with celery_app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)


def test_a_channel_publishes_every_message_through_one_redis_client(connection):
    channel = connection.default_channel
    with channel.conn_or_acquire() as first:
        pass

    # when
    publish(connection, {"n": 1})
    publish(connection, {"n": 2})

    # then: both arrive, and the channel still has the client it started with
    assert received(connection, 2) == [{"n": 1}, {"n": 2}]
    with channel.conn_or_acquire() as now:
        assert now is first
        assert now.connection_pool is channel.pool


def test_a_channel_whose_pool_was_dropped_builds_a_client_on_the_new_pool(connection):
    # given: a client built, then the pools dropped, as kombu does in a forked child
    channel = connection.default_channel
    with channel.conn_or_acquire() as before:
        pass
    channel._after_fork()

    # when
    publish(connection, {"n": 3})

    # then: the message went out on a client of the new pool, not the dropped one
    assert received(connection, 1) == [{"n": 3}]
    with channel.conn_or_acquire() as after:
        assert after is not before
        assert after.connection_pool is channel.pool
