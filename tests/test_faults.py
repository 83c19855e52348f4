"""Faults, with real processes: a Celery worker killed mid-send, Redis crashing under traffic, two
beats by mistake. What must hold is what the README promises: nothing is lost, nothing fires
twice, and what is sent twice after a crash carries what lets its receiver drop the copy.

Each test runs its own redis-server (on a free port, never the shared one, which it stops and
starts at will), its own `celery worker` and `celery beat` processes on this test's database,
a local HTTP receiver for callbacks and a local SMTP server for email. The processes share the
database with the test, so these tests need PostgreSQL (SQLite's test database lives in this
process's memory) and use transactional_db: what the test writes is committed and visible.

Time: the outbox runs fast here (OUTBOX_LEASE_SECONDS=8, requeue after 4 s, sweep every second)
so that recovery takes seconds; every wait is bounded and fails the test with the processes'
logs; nothing asserts how long anything took.
"""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import quote, urlsplit

import factory
import pytest
import redis
from django.core.management import call_command
from django.db import connection
from standardwebhooks.webhooks import Webhook

from audit.models import AuditEvent
from broker.celery import app as celery_app
from decisions import waiting
from decisions.models import Decision, Status
from decisions.services import decision_cancel
from notifications.callbacks import webhook_id
from notifications.models import Delivery
from organizations.services import webhook_signing_secrets
from tests.conftest import ALICE, BOB, IN_CI, client_for
from tests.factories import DecisionFactory
from tests.helpers import wait_for
from tests.receiver import Hang, receiver_fixture  # noqa: F401 (the `receiver` fixture)
from tests.smtp_sink import free_port, smtp_sink_fixture  # noqa: F401 (the `smtp_sink` fixture)

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 8
WAIT_SECONDS = 120  # bounds a failing test only; the machine is small and busy


# --- a Redis of our own -------------------------------------------------------------------------


class RedisServer:
    """A redis-server process of this test, without persistence: killed, it forgets its
    queues, as a crashed Redis without AOF does."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2)

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.answers, timeout=30, interval=0.05)

    def kill(self) -> None:
        """Crash it (SIGKILL): no goodbye to its clients, its queues gone."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc = None
        assert not self.answers()

    def queue_length(self, queue: str = "celery") -> int:
        return self.client().llen(queue)


@pytest.fixture
def own_redis(tmp_path):
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("CI must run this test with redis-server installed, and it is not.")
        pytest.skip("needs redis-server")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.proc.kill()
            server.proc.wait(timeout=30)


@pytest.fixture
def own_broker(own_redis, settings, monkeypatch):
    """This process publishes its tasks (and long-poll announcements) to our own Redis, never
    to the broker the rest of the suite shares with other runs on this machine."""
    # Celery reads the broker URL from the environment before its configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", own_redis.url)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    conf = celery_app.conf
    saved = conf.broker_url, conf.broker_transport_options, celery_app._pool, celery_app.amqp._producer_pool
    conf.broker_url = own_redis.url
    conf.broker_transport_options = {"socket_timeout": 5, "socket_connect_timeout": 2}
    # Celery caches its connection and producer pools: start afresh on the new URL.
    celery_app._pool, celery_app.amqp._producer_pool = None, None
    assert celery_app.connection_for_write().port == own_redis.port
    settings.LONGPOLL_REDIS_URL = own_redis.url
    monkeypatch.setattr(waiting, "_publisher", None)
    try:
        yield own_redis
    finally:
        # kombu keeps the pools of every URL it has seen, for good: leave ours be (closing
        # them would break a later test whose Redis happens to get the same port).
        conf.broker_url, conf.broker_transport_options = saved[0], saved[1]
        celery_app._pool, celery_app.amqp._producer_pool = saved[2], saved[3]


# --- Celery processes -------------------------------------------------------------------------


def database_url() -> str:
    """This test's database (pytest-django's test database), as DATABASE_URL."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "postgres", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Stack:
    """The Celery processes of one test, each in a process group of its own, logging to files."""

    def __init__(self, env: dict, logs: Path) -> None:
        self.env = env
        self.logs_dir = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.logs_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "broker", *args, "--loglevel", "WARNING"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def worker(self, name: str, *, concurrency: int = 1) -> subprocess.Popen:
        return self._start(
            name,
            "worker",
            *("--pool", "prefork", "--concurrency", str(concurrency), "--hostname", f"{name}@%h"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        )

    def beat(self, name: str) -> subprocess.Popen:
        return self._start(name, "beat", "--schedule", str(self.logs_dir / f"{name}-schedule"))

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL the process and its children at once: a crash, the OOM killer, a lost node."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            self.kill(proc)

    def logs(self) -> str:
        tails = []
        for name in self.procs:
            text = (self.logs_dir / f"{name}.log").read_text(errors="replace")
            tails.append(f"--- {name} (last 3000 characters) ---\n{text[-3000:]}")
        return "\n".join(tails)

    def wait_until(self, condition, *, what: str, timeout: float = WAIT_SECONDS):
        try:
            return wait_for(condition, timeout=timeout, interval=0.2)
        except AssertionError:
            raise AssertionError(f"{what}: not within {timeout} s\n{self.logs()}") from None


@pytest.fixture
def stack(transactional_db, own_broker, tmp_path, settings):
    """Make a Stack with stack(**environment); every process is killed before the test's
    database is emptied (this fixture depends on transactional_db, so it ends first)."""
    made: list[Stack] = []

    def make(**extra: str) -> Stack:
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in {"CACHE_URL", "DEBUG", "EMAIL_BACKEND", "EMAIL_URL"}
            and not name.startswith(("ANYMAIL_", "SLACK_", "OUTBOX_", "CLOCK_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="broker.settings",
            DATABASE_URL=database_url(),
            DATABASE_POOL_SIZE="2",
            CELERY_BROKER_URL=own_broker.url,
            SECRET_KEY=settings.SECRET_KEY,
            CALLBACK_ALLOW_PRIVATE="1",
            EMAIL_URL="locmem",
            OUTBOX_LEASE_SECONDS=str(LEASE_SECONDS),
            OUTBOX_REQUEUE_AFTER_SECONDS="4",
            OUTBOX_SWEEP_SECONDS="1",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        logs = tmp_path / f"stack-{len(made)}"
        logs.mkdir()
        made.append(Stack(env, logs))
        return made[-1]

    try:
        yield make
    finally:
        for each in made:
            each.stop()


# --- helpers ------------------------------------------------------------------------------------


class Refund(DecisionFactory):
    action = factory.LazyAttribute(lambda spec: f"Refund order #1042 ({spec.approvers[0]})")


def settled() -> bool:
    return not Delivery.objects.filter(status=Delivery.Status.PENDING).exists()


def audit_count(decision_id: str, event: str) -> int:
    return AuditEvent.objects.filter(decision_id=decision_id, event=event).count()


def verify_audit() -> None:
    call_command("verify_audit", stdout=io.StringIO())


# --- a worker killed mid-delivery ----------------------------------------------------------------


def test_a_worker_killed_mid_delivery_loses_no_callback_and_no_email(stack, acme_key, receiver, smtp_sink):
    # given: a receiver that holds the first callback (the worker dies meanwhile) and is slow
    # with the others, and a mail server that answers the first message late (likewise)
    receiver.script(Hang(30), *[Hang(1)] * 10)
    smtp_sink.hold(30)
    key = acme_key[0]
    # three cancelled decisions, each with a callback to make; three pending ones, each with an
    # approver to email (created first, so the worker meets callbacks before emails)
    cancelled = [
        decision_cancel(
            decision=Refund(
                api_key=key, approvers=[f"agent-{n}@example.com"], callback_url=receiver.url(f"/hook/{n}")
            ),
            actor="acme agent",
        )
        for n in range(3)
    ]
    asking = [Refund(api_key=key, approvers=[f"approver-{n}@example.com"]) for n in range(3)]
    celery = stack(EMAIL_URL=smtp_sink.url)
    celery.beat("sweeper")

    # when: the first worker is killed while a callback is on the wire
    first = celery.worker("first")
    celery.wait_until(lambda: receiver.requests, what="the first worker calls back")
    celery.kill(first)
    [cut_off_callback] = receiver.requests

    # and the second while an email is on the wire
    second = celery.worker("second")
    celery.wait_until(lambda: smtp_sink.mails, what="the second worker sends email")
    celery.kill(second)
    [cut_off_mail] = smtp_sink.mails

    # and a third worker carries on
    celery.worker("third")
    celery.wait_until(settled, what="every delivery settled")

    # then: every callback was delivered, and every attempt at one carried its stable
    # webhook-id and a valid signature
    secrets = webhook_signing_secrets(organization=key.organization)
    callbacks = list(Delivery.objects.filter(kind=Delivery.Kind.CALLBACK).select_related("decision"))
    assert sorted(d.decision_id for d in callbacks) == sorted(d.pk for d in cancelled)
    for delivery in callbacks:
        assert delivery.status == Delivery.Status.SENT, delivery.last_error
        path = urlsplit(delivery.decision.callback_url).path
        arrived = [request for request in receiver.requests if request.path == path]
        assert arrived
        assert {request.headers["webhook-id"] for request in arrived} == {webhook_id(delivery)}
        for request in arrived:
            Webhook(secrets[0]).verify(request.body, request.headers)
            event = json.loads(request.body)
            assert (event["type"], event["data"]["id"]) == ("decision.resolved", delivery.decision_id)
            assert event["data"]["status"] == Status.CANCELLED
        assert audit_count(delivery.decision_id, "callback.delivered") == 1

    # and only the callback cut off by the kill arrived twice: the same webhook-id both times,
    # so its receiver drops the copy
    arrivals = Counter(request.headers["webhook-id"] for request in receiver.requests)
    assert arrivals == {
        webhook_id(delivery): 2 if webhook_id(delivery) == cut_off_callback.headers["webhook-id"] else 1
        for delivery in callbacks
    }

    # then: every approver's email was sent, and nobody else's
    emails = list(Delivery.objects.filter(kind=Delivery.Kind.EMAIL).select_related("request"))
    for delivery in emails:
        if delivery.decision_id in {d.pk for d in asking}:
            assert delivery.status == Delivery.Status.SENT, delivery.last_error
            assert audit_count(delivery.decision_id, "notification.sent") == 1
        else:
            # asked about a decision cancelled before the email went out: held back on purpose
            assert delivery.status == Delivery.Status.SKIPPED
    received = smtp_sink.count_by_recipient()
    [cut_off_recipient] = cut_off_mail.recipients
    assert received == {
        f"approver-{n}@example.com": 2 if f"approver-{n}@example.com" == cut_off_recipient else 1
        for n in range(3)
    }
    verify_audit()

    # and the email cut off by the kill, which its approver finds twice, is the same message
    # both times (one Message-ID), so the mailbox can drop the copy as the callback's does
    copies = smtp_sink.to(cut_off_recipient)
    assert [mail.header("X-Countersign-Decision") for mail in copies] == [
        copies[0].header("X-Countersign-Decision")
    ] * 2
    assert copies[0].header("Message-ID") == copies[1].header("Message-ID"), (
        "an email redone after a crash gets a fresh Message-ID: its approver sees two emails "
        f"{copies[0].header('Message-ID')} and {copies[1].header('Message-ID')}"
    )


# --- Redis down during traffic ----------------------------------------------------------------------


def test_while_redis_is_down_agents_still_get_answers_and_the_outbox_delivers_once_it_is_back(
    stack, own_redis, acme_key, receiver, smtp_sink, settings
):
    settings.CALLBACK_ALLOW_PRIVATE = True  # the receiver is on 127.0.0.1
    agent = client_for(acme_key[1])
    agent.raise_request_exception = False  # a server error is an answer here, as a real agent gets it

    def post(approver: str, **fields):
        body = {"action": f"Refund order #1042 ({approver})", "approver": approver, "timeout_minutes": 30}
        return agent.post("/decisions", {**body, **fields}, format="json")

    # given: a decision whose email task reached Redis (this test's Redis is the broker), and
    # one the agent will call off
    before = post("before@example.com")
    assert before.status_code == 201, before.content
    assert own_redis.queue_length() == 1
    called_off = post("called-off@example.com", callback_url=receiver.url("/hook/called-off"))
    assert called_off.status_code == 201, called_off.content

    # when: Redis crashes, losing the tasks it held, and agents keep asking
    own_redis.kill()
    assert client_for(None).get("/healthz").json()["broker"] == "unreachable"
    during = [post(f"during-{n}@example.com") for n in range(4)]

    # then: every answer is a 201, and every decision is stored with its outbox rows
    assert [response.status_code for response in during] == [201] * 4, [r.content[:300] for r in during]
    for response in [before, *during]:
        decision = Decision.objects.get(pk=response.json()["id"])
        [delivery] = Delivery.objects.filter(decision=decision)
        assert (delivery.kind, delivery.status, delivery.attempts) == ("email", "pending", 0)

    # when: the agent cancels a decision meanwhile (its callback, and the long-poll wake-up,
    # cannot reach Redis either)
    cancelled = agent.post(f"/decisions/{called_off.json()['id']}/cancel")

    # then: answered as usual
    assert cancelled.status_code == 200, cancelled.content[:300]
    assert cancelled.json()["status"] == Status.CANCELLED

    # when: Redis is back (empty), with a worker and the beat that sweeps the outbox
    own_redis.start()
    celery = stack(EMAIL_URL=smtp_sink.url)
    celery.beat("sweeper")
    celery.worker("after")
    celery.wait_until(settled, what="every delivery settled")

    # then: every email went out once, and the callback arrived once
    for delivery in Delivery.objects.exclude(decision_id=called_off.json()["id"]):
        assert delivery.status == Delivery.Status.SENT, delivery.last_error
        assert audit_count(delivery.decision_id, "notification.sent") == 1
    assert smtp_sink.count_by_recipient() == {
        "before@example.com": 1,
        **{f"during-{n}@example.com": 1 for n in range(4)},
    }
    [callback] = Delivery.objects.filter(kind=Delivery.Kind.CALLBACK)
    assert callback.status == Delivery.Status.SENT, callback.last_error
    assert [request.headers["webhook-id"] for request in receiver.requests] == [webhook_id(callback)]
    verify_audit()


# --- two beats ----------------------------------------------------------------------------------


def test_two_beats_fire_each_escalation_and_deadline_once(stack, acme_key, receiver):
    # given: two beats by mistake, each ticking the clock five times a second, and a worker
    # that runs two ticks at once
    key = acme_key[0]
    celery = stack(CLOCK_TICK_SECONDS="0.2")
    celery.beat("beat-one")
    celery.beat("beat-two")
    celery.worker("clock", concurrency=2)
    # the clock runs once a decision of 0.6 s has expired (started processes take a while)
    canary = Refund(api_key=key, approvers=[ALICE], timeout_minutes=0.01)
    celery.wait_until(
        lambda: Decision.objects.filter(pk=canary.pk).exclude(status=Status.PENDING).exists(),
        what="the clock expires a decision",
    )

    # when: ten decisions escalate to bob after 1.2 s, then expire after 9 s, all at the same moments
    decisions = [
        Refund(
            api_key=key,
            approvers=[ALICE],
            timeout_minutes=0.15,
            escalation=[{"after_minutes": 0.02, "approvers": [BOB]}],
            callback_url=receiver.url(f"/hook/{n}"),
        )
        for n in range(10)
    ]
    celery.wait_until(
        lambda: not Decision.objects.filter(status=Status.PENDING).exists() and settled(),
        what="every decision expired and every delivery settled",
    )

    # then: each escalated once, expired once, and called back once
    for decision in Decision.objects.filter(pk__in=[d.pk for d in decisions]):
        assert decision.status == Status.EXPIRED
        assert audit_count(decision.pk, "decision.escalated") == 1
        assert audit_count(decision.pk, "decision.resolved") == 1
        assert sorted(decision.requests.values_list("address", "level")) == [(ALICE, 0), (BOB, 1)]
        asks = Counter(
            decision.deliveries.filter(purpose=Delivery.Purpose.ASK).values_list(
                "request__address", flat=True
            )
        )
        assert asks == {ALICE: 1, BOB: 1}
        # Reminders fire once each, at most: one due too close to the deadline may be overtaken.
        reminder_steps = sum(step["kind"] == "remind" for step in decision.schedule)
        reminders = Counter(
            decision.deliveries.filter(purpose=Delivery.Purpose.REMIND).values_list(
                "request__address", flat=True
            )
        )
        assert all(count <= reminder_steps for count in reminders.values()), (reminders, decision.schedule)
        [callback] = decision.deliveries.filter(kind=Delivery.Kind.CALLBACK)
        assert callback.status == Delivery.Status.SENT
    arrivals = Counter(request.headers["webhook-id"] for request in receiver.requests)
    assert sorted(arrivals.values()) == [1] * 10
    verify_audit()
