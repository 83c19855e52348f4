"""Long-poll: GET /decisions/{id}?wait=N answers as soon as the decision resolves.

After a resolution commits, its id is published on a Redis channel. Each web process keeps
one subscription while anybody waits, and a table of waiting requests to wake. Every
LONGPOLL_RECHECK_SECONDS it also asks the database, in one query for all its waiters, which
of them have resolved, so a lost announcement (a Redis blip) costs latency, never an answer.
Without Redis (the embedded default) that database check is the mechanism.

A waiter is a future on the event loop, not a thread: a thousand waiters cost a thousand
futures. The hub's two background tasks live only while somebody waits.
"""

import asyncio
import contextlib
import logging
import weakref
from collections import defaultdict

import redis
import redis.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from decisions.models import Decision, Status

logger = logging.getLogger(__name__)

CHANNEL = "countersign:decision-resolved"
_publisher: redis.Redis | None = None
_stopping: set[asyncio.Task] = set()  # cancelled listeners, referenced until they end


def publish_resolution(decision_id: str) -> None:
    """Announce a committed resolution to every web process (called on commit)."""
    global _publisher
    if not settings.LONGPOLL_REDIS_URL:
        return
    if _publisher is None:
        _publisher = redis.Redis.from_url(
            settings.LONGPOLL_REDIS_URL, socket_timeout=1, socket_connect_timeout=1
        )
    _publisher.publish(CHANNEL, decision_id)


def _resolved_among(decision_ids: list[str]) -> list[str]:
    try:
        return list(
            Decision.objects.filter(pk__in=decision_ids)
            .exclude(status=Status.PENDING)
            .values_list("pk", flat=True)
        )
    finally:
        connections.close_all()  # this runs in a pool thread: give the connection back


class WaitHub:
    """The waiting requests of one event loop (one web process under uvicorn)."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future]] = defaultdict(set)
        self._tasks: list[asyncio.Task] = []

    @contextlib.asynccontextmanager
    async def watching(self, decision_id: str):
        """Register interest before reading the decision, so a resolution committed between
        the read and the wait still wakes us. Yields an awaitable `wait(seconds)`."""
        future = asyncio.get_running_loop().create_future()
        self._waiters[decision_id].add(future)
        self._start()

        async def wait(seconds: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), seconds)

        try:
            yield wait
        finally:
            waiting = self._waiters.get(decision_id)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiters[decision_id]
            if not self._waiters:
                await self._stop()

    def wake(self, decision_id: str) -> None:
        for future in self._waiters.get(decision_id, ()):
            if not future.done():
                future.set_result(None)

    def _start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._recheck_forever()))
        if settings.LONGPOLL_REDIS_URL:
            self._tasks.append(loop.create_task(self._listen_forever(settings.LONGPOLL_REDIS_URL)))

    async def _stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
            # Not awaited: redis-py can swallow a cancellation that lands just after SUBSCRIBE,
            # and no request may wait on the listener's exit (the last waiter would hang).
            _stopping.add(task)
            task.add_done_callback(_stopping.discard)

    async def _listen_forever(self, url: str) -> None:
        while True:
            try:
                client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2)
                async with client, client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    # get_message with a timeout, not listen(): a cancellation redis-py swallowed
                    # is still seen here (cancelling() stays set), within a second.
                    while not asyncio.current_task().cancelling():
                        message = await pubsub.get_message(timeout=1.0)
                        if message and message["type"] == "message":
                            self.wake(message["data"].decode())
                    raise asyncio.CancelledError
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning(
                    "long-poll: Redis subscription lost; database re-checks continue", exc_info=True
                )
                await asyncio.sleep(1)

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.LONGPOLL_RECHECK_SECONDS)
            if not self._waiters:
                continue
            try:
                resolved = await sync_to_async(_resolved_among, thread_sensitive=False)(list(self._waiters))
            except Exception:
                logger.warning("long-poll: database re-check failed", exc_info=True)
                continue
            for decision_id in resolved:
                self.wake(decision_id)


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WaitHub]" = weakref.WeakKeyDictionary()


def hub() -> WaitHub:
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = WaitHub()
    return _hubs[loop]
