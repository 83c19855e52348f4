"""GET /decisions/{id}?wait=N: the request is held until the decision leaves pending or N
seconds (at most 60) pass, so an agent learns the outcome the moment alice clicks.

First the edges, through Django's test client. Then the real thing: the ASGI app under a
real uvicorn server, real HTTP long-polls from agent threads, resolutions committed in the
test, and the wake-up carried by Redis pub/sub.
"""

import asyncio
import contextlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from uuid import uuid4

import httpx
import pytest
import redis
import uvicorn
from django.db import connection
from django.utils import timezone

from broker.asgi import application
from decisions import waiting
from decisions.models import Decision
from decisions.services import (
    decision_answer,
    decision_cancel,
    decision_expire,
)
from organizations.services import api_key_revoke
from tests.conftest import ALICE, client_for
from tests.factories import DecisionFactory
from tests.helpers import wait_for

AGENT = "acme agent"

# Every test commits: a real request sees committed data only, and the long-poll may read
# from a thread (and connection) of its own.
pytestmark = pytest.mark.django_db(transaction=True)


class Deploy(DecisionFactory):
    action = "Deploy release 4.2"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == code
    return error


def get(client, path: str, data: dict | None = None, *, within: float = 20.0):
    """client.get, bounded: the test client has no timeout of its own, so the call runs in a
    daemon thread and a request still running after `within` seconds fails the test instead
    of hanging the run."""
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["response"] = client.get(path, data)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(within)
    if thread.is_alive():
        pytest.fail(f"GET {path} {data} did not answer within {within} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"]


def count_waits(monkeypatch, on_wait=None) -> list[str]:
    """Record each decision id a request starts to wait for: the hub's `wait`, after the
    first read found the decision pending. on_wait(decision_id) runs first, if given."""
    started: list[str] = []
    watching = waiting.WaitHub.watching

    @contextlib.asynccontextmanager
    async def counted_watching(hub, decision_id: str):
        async with watching(hub, decision_id) as wait:

            async def counted_wait(seconds: float) -> None:
                if on_wait is not None:
                    on_wait(decision_id)
                started.append(decision_id)
                await wait(seconds)

            yield counted_wait

    monkeypatch.setattr(waiting.WaitHub, "watching", counted_watching)
    return started


@pytest.fixture
def never_held(monkeypatch):
    """Fail the request if it starts to wait: proving "at once" this way needs no clock."""

    def refuse(decision_id: str) -> None:
        raise AssertionError(f"the request for {decision_id} was held")

    count_waits(monkeypatch, on_wait=refuse)


# --- the edges, through the test client -----------------------------------------------------


@pytest.mark.parametrize("wait", ["-1", "abc", "61", "60.5", "1e3", "nan", "inf", "-inf", ""])
def test_a_wait_that_is_not_0_to_60_seconds_is_a_400(api, acme_key, wait):
    decision = Deploy(api_key=acme_key[0])

    response = get(api, f"/decisions/{decision.id}", {"wait": wait})

    error = assert_error(response, 400, "invalid")
    assert list(error["fields"]) == ["wait"]


@pytest.mark.parametrize("wait", ["0", "0.0"])
def test_wait_0_answers_at_once_with_the_pending_decision(api, acme_key, never_held, wait):
    decision = Deploy(api_key=acme_key[0])

    response = get(api, f"/decisions/{decision.id}", {"wait": wait})

    assert response.status_code == 200
    assert response.json()["id"] == decision.id
    assert response.json()["status"] == "pending"


def test_a_resolved_decision_is_answered_at_once_whatever_the_wait(api, acme_key, never_held):
    decision = Deploy(api_key=acme_key[0])
    decision_cancel(decision=decision, actor=AGENT)

    response = get(api, f"/decisions/{decision.id}", {"wait": "60"})

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["outcome"]["by"] == AGENT


def test_another_organizations_decision_is_a_404_at_once(api, globex_key, never_held):
    # given: Globex's pending decision; Acme's agent guesses its id
    theirs = Deploy(api_key=globex_key[0])

    response = get(api, f"/decisions/{theirs.id}", {"wait": "60"})

    assert_error(response, 404, "not_found")


def test_an_unknown_decision_is_a_404_at_once(api, never_held):
    response = get(api, "/decisions/dec_doesnotexist", {"wait": "60"})

    assert_error(response, 404, "not_found")


def test_without_a_key_a_long_poll_is_a_401_at_once(acme_key, never_held):
    decision = Deploy(api_key=acme_key[0])

    response = get(client_for(None), f"/decisions/{decision.id}", {"wait": "60"})

    assert_error(response, 401, "not_authenticated")


def test_with_a_revoked_key_a_long_poll_is_a_401_at_once(acme_key, never_held):
    decision = Deploy(api_key=acme_key[0])
    api_key_revoke(key=acme_key[0])

    response = get(client_for(acme_key[1]), f"/decisions/{decision.id}", {"wait": "60"})

    assert_error(response, 401, "authentication_failed")


def test_a_decision_still_pending_when_the_wait_runs_out_comes_back_pending(acme_key, held):
    # given: nobody answers (the wait is a fraction of a second, so the test stays short)
    decision = Deploy(api_key=acme_key[0])
    agent = client_for(acme_key[1])

    # when
    response = get(agent, f"/decisions/{decision.id}", {"wait": "0.3"})

    # then: it was held (which also shows never_held above would have noticed), then answered
    assert held == [decision.id]
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert response.json()["outcome"] is None


# --- the real thing: uvicorn, HTTP, Redis pub/sub --------------------------------------------


@pytest.fixture
def asgi_server(transactional_db, monkeypatch):
    """The ASGI app under a real uvicorn server on a free port, in a thread of this process.
    Yields its base URL."""
    # Committed test transactions publish delivery tasks; nobody consumes them here.
    monkeypatch.setattr("notifications.services._publish", lambda delivery_ids: None)
    config = uvicorn.Config(application, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
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


@pytest.fixture
def agents():
    """Threads for the agents' HTTP calls."""
    with ThreadPoolExecutor(max_workers=60, thread_name_prefix="agent") as pool:
        yield pool


@pytest.fixture
def held(monkeypatch) -> list[str]:
    """The decision ids of the requests that have started to wait."""
    return count_waits(monkeypatch)


@pytest.fixture
def subscribers(monkeypatch, settings):
    """Give the wake-ups a channel of this test's own, so that other test runs sharing this
    Redis neither count as subscribers nor publish to us. Returns a function counting the web
    process's subscriptions to it: once it is 1, a publish can no longer be missed."""
    channel = f"countersign:test:{uuid4().hex}"
    monkeypatch.setattr(waiting, "CHANNEL", channel)
    client = redis.Redis.from_url(settings.LONGPOLL_REDIS_URL, socket_timeout=2)

    def count() -> int:
        return client.pubsub_numsub(channel)[0][1]

    yield count
    client.close()


def long_poll(agents: ThreadPoolExecutor, base_url: str, raw_key: str, decision_id: str) -> Future:
    """GET ?wait=30 in an agent thread. The client gives up after 20 s: if the wake-up is
    broken, the test fails there, rather than passing on the pending answer at 30 s."""
    return agents.submit(
        httpx.get,
        f"{base_url}/decisions/{decision_id}",
        params={"wait": 30},
        headers={"Authorization": f"Bearer {raw_key}"},
        timeout=20,
    )


def approve(decision: Decision) -> None:
    request = decision.requests.get(address=ALICE)
    decision_answer(request_id=request.pk, choice="approve", via="email")


def deny(decision: Decision) -> None:
    request = decision.requests.get(address=ALICE)
    decision_answer(request_id=request.pk, choice="deny", note="not today", via="email")


def cancel(decision: Decision) -> None:
    decision_cancel(decision=decision, actor=AGENT)


def expire(decision: Decision) -> None:
    Decision.objects.filter(pk=decision.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert decision_expire(decision_id=decision.pk) is not None


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize(
    ("resolve", "status", "choice", "by"),
    [
        (approve, "approved", "approve", ALICE),
        (deny, "denied", "deny", ALICE),
        (cancel, "cancelled", None, AGENT),
        (expire, "expired", None, "system"),
    ],
    ids=["approve", "deny", "cancel", "expiry"],
)
def test_a_waiting_agent_is_woken_by_the_resolution(
    asgi_server, agents, held, subscribers, settings, acme_key, resolve, status, choice, by
):
    # The database re-check runs only once a minute here, and the agent gives up after 20 s:
    # an answer can only come from the Redis wake-up. That proves the wake-up without timing
    # anything.
    settings.LONGPOLL_RECHECK_SECONDS = 60

    # given: the agent is waiting, and the web process listens for resolutions
    decision = Deploy(api_key=acme_key[0])
    answer = long_poll(agents, asgi_server, acme_key[1], decision.id)
    wait_for(lambda: held == [decision.id] and subscribers() == 1)

    # when
    resolve(decision)

    # then
    response = answer.result(timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == decision.id
    assert body["status"] == status
    assert (body["outcome"]["status"], body["outcome"]["choice"], body["outcome"]["by"]) == (
        status,
        choice,
        by,
    )


@pytest.mark.postgres
def test_a_lost_wake_up_costs_latency_not_the_answer(
    asgi_server, agents, held, settings, acme_key, monkeypatch
):
    # given: announcements are lost (Redis blipped), and the database re-check runs often
    published: list[str] = []
    monkeypatch.setattr("decisions.services.resolve.publish_resolution", published.append)
    settings.LONGPOLL_RECHECK_SECONDS = 0.2
    decision = Deploy(api_key=acme_key[0])
    answer = long_poll(agents, asgi_server, acme_key[1], decision.id)
    wait_for(lambda: held == [decision.id])

    # when
    approve(decision)

    # then: the re-check finds it
    assert published == [decision.id]  # the announcement that went nowhere
    response = answer.result(timeout=30)
    assert response.status_code == 200
    assert response.json()["status"] == "approved"


WAITERS = 50


@pytest.mark.postgres
@pytest.mark.redis
def test_fifty_agents_waiting_at_once_all_get_their_answers(
    asgi_server, agents, held, subscribers, settings, acme_key
):
    # Only the Redis wake-up can answer within the agents' 20 s (see above).
    settings.LONGPOLL_RECHECK_SECONDS = 60

    # given: fifty decisions, an agent waiting on each
    decisions = [Deploy(api_key=acme_key[0], action=f"Deploy service {i}") for i in range(WAITERS)]
    answers = [long_poll(agents, asgi_server, acme_key[1], d.id) for d in decisions]
    wait_for(lambda: len(held) == WAITERS and subscribers() == 1)

    # when: alice approves the even ones and denies the odd ones
    for i, decision in enumerate(decisions):
        (approve if i % 2 == 0 else deny)(decision)

    # then
    bodies = [answer.result(timeout=30).json() for answer in answers]
    assert [body["id"] for body in bodies] == [d.id for d in decisions]
    assert [body["status"] for body in bodies] == [
        "approved" if i % 2 == 0 else "denied" for i in range(WAITERS)
    ]


@pytest.mark.postgres
def test_waiting_agents_do_not_hold_a_thread_each(asgi_server, agents, held, acme_key):
    # given: fifty agents waiting
    decisions = [Deploy(api_key=acme_key[0], action=f"Deploy service {i}") for i in range(WAITERS)]
    threads_before = _server_threads()
    answers = [long_poll(agents, asgi_server, acme_key[1], d.id) for d in decisions]
    wait_for(lambda: len(held) == WAITERS)

    # then: a waiter is a future on the event loop. Django's ASGI handler runs each request's
    # sync parts (middleware, signals, the first read) in a thread of the request's own; while
    # it waits, a waiter must not keep one (a thousand waiters, a thousand idle threads).
    # Counted here: every thread of this process but the agents'.
    grown = _server_threads() - threads_before

    # (let the agents go before asserting, so a failure does not leave them hanging)
    for decision in decisions:
        cancel(decision)
    assert all(answer.result(timeout=30).json()["status"] == "cancelled" for answer in answers)
    assert grown < WAITERS // 2, f"{grown} more threads while {WAITERS} agents wait"


def _server_threads() -> int:
    return sum(1 for thread in threading.enumerate() if not thread.name.startswith("agent"))


LEAVE_AFTER = [0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01]


@pytest.mark.redis
def test_a_request_leaving_just_as_the_subscription_starts_is_not_held(settings, subscribers):
    # The last waiter to leave stops the hub's Redis listener. Requests that come and go
    # quickly (a 404, a decision already resolved, wait=0) often leave while the listener is
    # still subscribing: leaving must not wait on it. Two hundred requests, each leaving at a
    # different moment of the listener's start, each given 5 s to get out. (`subscribers`
    # gives this test a channel of its own; the database re-check is kept out of the way.)
    settings.LONGPOLL_RECHECK_SECONDS = 60
    outcome: dict = {}

    async def come_and_go(delay: float) -> None:
        async with waiting.hub().watching("dec_comeandgo"):
            await asyncio.sleep(delay)

    async def two_hundred_requests() -> None:
        for i in range(200):
            delay = LEAVE_AFTER[i % len(LEAVE_AFTER)]
            try:
                await asyncio.wait_for(come_and_go(delay), 5)
            except TimeoutError:
                outcome["stuck"] = f"request {i} (leaving after {delay * 1000:g} ms) was held"
                return
        outcome["stuck"] = None

    # In a daemon thread with a loop of its own: if a listener does get stuck, it stays stuck
    # there instead of in this test's teardown.
    threading.Thread(target=asyncio.run, args=(two_hundred_requests(),), daemon=True).start()
    wait_for(lambda: "stuck" in outcome, timeout=120)
    assert outcome["stuck"] is None, outcome["stuck"]
