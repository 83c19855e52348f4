"""Durable style: the graph calls plain `interrupt(value)`; the bridge puts each pending
interrupt of a thread to a person through Countersign, and resumes the thread with
`Command(resume=…)` when they answer, on the graph's own checkpointer.

Nothing is kept in memory between the interrupt and the answer. Everything the bridge needs
is in the checkpoint (the pending interrupts) and in Countersign (the decisions, found again
by a deterministic Idempotency-Key per thread, interrupt and item), so the process that
resumes the graph may be another one than the process that started it, hours later.

    bridge = InterruptBridge(graph, defaults={"approver": "alice@example.com"},
                             callback_url="https://agent.example.com/countersign",
                             webhook_secret=os.environ["COUNTERSIGN_WEBHOOK_SECRET"])
    bridge.invoke({"order": 1042}, {"configurable": {"thread_id": "order-1042"}})
    app = bridge.wsgi_app()   # or asgi_app(), django_view(): mount it at the callback URL
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langgraph.types import Command

from countersign.async_client import AsyncCountersign
from countersign.client import Countersign
from countersign.errors import Conflict, CountersignError
from countersign.langgraph.shapes import InterruptShape, shape_of
from countersign.models import Decision
from countersign.webhooks import verify_webhook

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.pregel import Pregel

METADATA_KEY = "langgraph"  # decision.metadata["langgraph"] = {"thread_id", "interrupt_id", …}
ROUTING_FIELDS = frozenset({"approver", "approvers", "stages", "quorum"})
# A graph that is answered at once forever (a policy approving every step of a loop) must
# still end: LangGraph's own recursion limit stops it, this stops us first.
MAX_ROUNDS = 100


@dataclass(frozen=True)
class PendingInterrupt:
    """An interrupt of the thread still waiting for its answer."""

    id: str
    value: Any
    shape: InterruptShape


@dataclass(frozen=True)
class Forwarded:
    """A pending interrupt and its decisions, one per item, in item order."""

    interrupt: PendingInterrupt
    decisions: list[Decision]

    @property
    def answered(self) -> bool:
        return all(decision.is_resolved for decision in self.decisions)


@dataclass(frozen=True)
class ThreadStatus:
    """Where a thread stands after the bridge has done what it could."""

    thread_id: str
    values: Any  # the graph state's values
    waiting_on: list[Decision]  # decisions nobody has answered yet
    resumed: int  # how many times the thread was resumed by this call
    done: bool  # no interrupt pending and no node left to run


@dataclass(frozen=True)
class CallbackResult:
    status_code: int
    message: str
    thread_id: str | None = None
    decision_id: str | None = None
    resumed: int = 0

    def as_json(self) -> bytes:
        body = {
            "message": self.message,
            "thread_id": self.thread_id,
            "decision_id": self.decision_id,
            "resumed": self.resumed,
        }
        return json.dumps(body).encode()


def thread_of(config: RunnableConfig) -> str:
    try:
        return str(config["configurable"]["thread_id"])
    except (KeyError, TypeError):
        raise ValueError('config must name the thread: {"configurable": {"thread_id": …}}') from None


@contextlib.contextmanager
def _settings_must_match(thread_id: str) -> Iterator[None]:
    try:
        yield
    except Conflict as exc:
        if exc.code != "idempotency_conflict":
            raise
        # The decision is found again by its Idempotency-Key only if it is asked the same way.
        raise CountersignError(
            f"thread {thread_id}: this interrupt was forwarded before with other settings (defaults, "
            "callback_url or name differ): give the bridge the same settings in every process"
        ) from exc


def _json_safe(value: Any) -> Any:
    # An interrupt value may hold what a checkpoint can store but JSON cannot (datetimes,
    # UUIDs): the approver sees their text.
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


@dataclass
class InterruptBridge:
    """Connects the interrupts of one compiled graph (with a checkpointer) to Countersign.

    graph:            the compiled graph; its checkpointer must be durable for the answer to
                      survive a restart (SqliteSaver, PostgresSaver, …).
    client / async_client: how to reach Countersign (default: from COUNTERSIGN_URL and
                      COUNTERSIGN_API_KEY); either one is enough, the other is derived.
    defaults:         decision fields for every interrupt unless the interrupt sets them,
                      e.g. {"approver": "group:finance", "timeout_minutes": 60}. If the
                      interrupt names approvers, none of the default routing is used.
    callback_url:     where Countersign POSTs the outcome (the mounted receiver). Without
                      it, use wait_and_resume() (long-poll) to resume.
    webhook_secret:   the organization's whsec_… secret(s), to verify callbacks.
    config_for_thread: the config to resume a thread with; by default only its thread_id.
    context_for_thread: the runtime context to resume it with, if the graph has one.
    name:             keeps the Idempotency-Keys of two graphs with the same thread ids apart.
    on_forward:       called once per new decision this bridge creates (e.g. to log it).
    on_resume:        called with (thread_id, {interrupt_id: resume value}) before a resume.
    """

    graph: Pregel
    client: Countersign | None = None
    async_client: AsyncCountersign | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    callback_url: str | None = None
    webhook_secret: str | Sequence[str] | None = None
    config_for_thread: Callable[[str], RunnableConfig] | None = None
    context_for_thread: Callable[[str], Any] | None = None
    name: str | None = None
    on_forward: Callable[[Decision], Any] | None = None
    on_resume: Callable[[str, dict[str, Any]], Any] | None = None

    def __post_init__(self) -> None:
        self._seen: set[str] = set()
        self._guard = threading.Lock()
        # One resume at a time per thread: a callback retried while the first delivery is
        # still resuming must find the interrupt answered, not resume it a second time.
        self._thread_locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._async_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # --- configuration --------------------------------------------------------------------

    def _sync(self) -> Countersign:
        if self.client is None:
            settings = self.async_client.settings if self.async_client else None
            self.client = Countersign(settings.base_url, settings.api_key) if settings else Countersign()
        return self.client

    def _async(self) -> AsyncCountersign:
        if self.async_client is None:
            settings = self.client.settings if self.client else None
            self.async_client = (
                AsyncCountersign(settings.base_url, settings.api_key) if settings else AsyncCountersign()
            )
        return self.async_client

    def config(self, thread_id: str) -> RunnableConfig:
        if self.config_for_thread is not None:
            return self.config_for_thread(thread_id)
        return {"configurable": {"thread_id": thread_id}}

    def _invoke_kwargs(self, thread_id: str) -> dict[str, Any]:
        return {"context": self.context_for_thread(thread_id)} if self.context_for_thread else {}

    def _thread_lock(self, thread_id: str) -> threading.Lock:
        with self._guard:
            lock = self._thread_locks.get(thread_id)
            if lock is None:
                lock = self._thread_locks[thread_id] = threading.Lock()
            return lock

    def _async_lock(self, thread_id: str) -> asyncio.Lock:
        with self._guard:
            lock = self._async_locks.get(thread_id)
            if lock is None:
                lock = self._async_locks[thread_id] = asyncio.Lock()
            return lock

    # --- what to ask ----------------------------------------------------------------------

    def _pending(self, snapshot: Any) -> list[PendingInterrupt]:
        return [
            PendingInterrupt(
                id=interrupt.id,
                value=interrupt.value,
                shape=shape_of(interrupt.value, getattr(interrupt, "response_schema", None)),
            )
            for interrupt in snapshot.interrupts
        ]

    def _requests(self, thread_id: str, interrupt: PendingInterrupt) -> list[tuple[str, dict[str, Any]]]:
        """(Idempotency-Key, body) for each item: the same every time for the same interrupt,
        so forwarding twice, or from another process, finds the decisions made the first time."""
        asks = interrupt.shape.asks()
        scope = "\x00".join([self.name or self.graph.name, thread_id, interrupt.id])
        digest = hashlib.sha256(scope.encode()).hexdigest()[:40]
        requests = []
        for index, ask in enumerate(asks):
            body = {**self.defaults, **ask}
            if ROUTING_FIELDS & set(ask):
                # The interrupt chose its approvers: the defaults' routing would contradict it.
                body = {k: v for k, v in body.items() if k not in ROUTING_FIELDS or k in ask}
            body["metadata"] = {
                **dict(self.defaults.get("metadata") or {}),
                **dict(ask.get("metadata") or {}),
                METADATA_KEY: {
                    "graph": self.name or self.graph.name,
                    "thread_id": thread_id,
                    "interrupt_id": interrupt.id,
                    "item": index,
                    "items": len(asks),
                },
            }
            if self.callback_url:
                body["callback_url"] = self.callback_url
            requests.append((f"langgraph:{digest}:{index}", _json_safe(body)))
        return requests

    def _announce(self, decisions: list[Decision]) -> None:
        if self.on_forward is None:
            return
        for decision in decisions:
            with self._guard:
                new = decision.id not in self._seen
                self._seen.add(decision.id)
            if new:
                self.on_forward(decision)

    # --- blocking API ---------------------------------------------------------------------

    def forward(self, config: RunnableConfig) -> list[Forwarded]:
        """Put every pending interrupt of the thread to Countersign (again: idempotent)."""
        thread_id = thread_of(config)
        snapshot = self.graph.get_state(config)
        forwarded = []
        client = self._sync()
        for interrupt in self._pending(snapshot):
            with _settings_must_match(thread_id):
                decisions = [
                    client.create(body.pop("action"), idempotency_key=key, **body)
                    for key, body in self._requests(thread_id, interrupt)
                ]
            self._announce(decisions)
            forwarded.append(Forwarded(interrupt, decisions))
        return forwarded

    def advance(self, config: RunnableConfig) -> ThreadStatus:
        """Forward the thread's pending interrupts and resume it with those already answered;
        again while the resumed graph interrupts with something already answered (a policy
        may approve at once). Safe to call any number of times, from any process."""
        thread_id = thread_of(config)
        resumed = 0
        with self._thread_lock(thread_id):
            for _ in range(MAX_ROUNDS):
                forwarded = self.forward(config)
                answers = {
                    f.interrupt.id: f.interrupt.shape.resume_value(f.decisions)
                    for f in forwarded
                    if f.answered
                }
                if not answers:
                    return self._status(thread_id, self.graph.get_state(config), forwarded, resumed)
                if self.on_resume is not None:
                    self.on_resume(thread_id, answers)
                self.graph.invoke(Command(resume=answers), config, **self._invoke_kwargs(thread_id))
                resumed += 1
        raise CountersignError(f"thread {thread_id} was still being resumed after {MAX_ROUNDS} rounds")

    def invoke(self, input: Any, config: RunnableConfig) -> ThreadStatus:
        """graph.invoke, then advance(): the thread runs until it waits for a person."""
        self.graph.invoke(input, config, **self._invoke_kwargs(thread_of(config)))
        return self.advance(config)

    def wait_and_resume(self, config: RunnableConfig, *, timeout: float | None = None) -> ThreadStatus:
        """Without a callback URL: long-poll the thread's decisions and resume it as they are
        answered, until it finishes, or until `timeout` seconds pass with decisions pending."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.advance(config)
            remaining = None if deadline is None else deadline - time.monotonic()
            if not status.waiting_on or (remaining is not None and remaining <= 0):
                return status
            self._sync().wait(status.waiting_on[0].id, timeout=remaining)

    def handle_callback(self, body: bytes | str, headers: Mapping[str, str]) -> CallbackResult:
        """A callback POST, verified, then the thread it names advanced. The status code is
        for the receiver to answer with: 2xx ends Countersign's retries, 5xx asks for one."""
        early = self._read_callback(body, headers)
        if isinstance(early, CallbackResult):
            return early
        thread_id, decision = early
        status = self.advance(self.config(thread_id))
        return CallbackResult(200, "thread advanced", thread_id, decision.id, status.resumed)

    # --- asyncio API (async checkpointers: AsyncSqliteSaver, AsyncPostgresSaver) -----------

    async def aforward(self, config: RunnableConfig) -> list[Forwarded]:
        thread_id = thread_of(config)
        snapshot = await self.graph.aget_state(config)
        forwarded = []
        client = self._async()
        for interrupt in self._pending(snapshot):
            with _settings_must_match(thread_id):
                decisions = [
                    await client.create(body.pop("action"), idempotency_key=key, **body)
                    for key, body in self._requests(thread_id, interrupt)
                ]
            self._announce(decisions)
            forwarded.append(Forwarded(interrupt, decisions))
        return forwarded

    async def aadvance(self, config: RunnableConfig) -> ThreadStatus:
        thread_id = thread_of(config)
        resumed = 0
        async with self._async_lock(thread_id):
            for _ in range(MAX_ROUNDS):
                forwarded = await self.aforward(config)
                answers = {
                    f.interrupt.id: f.interrupt.shape.resume_value(f.decisions)
                    for f in forwarded
                    if f.answered
                }
                if not answers:
                    return self._status(thread_id, await self.graph.aget_state(config), forwarded, resumed)
                if self.on_resume is not None:
                    self.on_resume(thread_id, answers)
                await self.graph.ainvoke(Command(resume=answers), config, **self._invoke_kwargs(thread_id))
                resumed += 1
        raise CountersignError(f"thread {thread_id} was still being resumed after {MAX_ROUNDS} rounds")

    async def ainvoke(self, input: Any, config: RunnableConfig) -> ThreadStatus:
        await self.graph.ainvoke(input, config, **self._invoke_kwargs(thread_of(config)))
        return await self.aadvance(config)

    async def await_and_resume(self, config: RunnableConfig, *, timeout: float | None = None) -> ThreadStatus:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            status = await self.aadvance(config)
            remaining = None if deadline is None else deadline - loop.time()
            if not status.waiting_on or (remaining is not None and remaining <= 0):
                return status
            await self._async().wait(status.waiting_on[0].id, timeout=remaining)

    async def ahandle_callback(self, body: bytes | str, headers: Mapping[str, str]) -> CallbackResult:
        early = self._read_callback(body, headers)
        if isinstance(early, CallbackResult):
            return early
        thread_id, decision = early
        status = await self.aadvance(self.config(thread_id))
        return CallbackResult(200, "thread advanced", thread_id, decision.id, status.resumed)

    # --- receivers ------------------------------------------------------------------------

    def wsgi_app(self) -> Callable[..., Any]:
        from countersign.langgraph.receivers import wsgi_app

        return wsgi_app(self)

    def asgi_app(self, *, in_thread: bool = False) -> Callable[..., Any]:
        """in_thread=True runs the blocking API in a worker thread, for sync checkpointers
        (SqliteSaver, PostgresSaver) under an ASGI server."""
        from countersign.langgraph.receivers import asgi_app

        return asgi_app(self, in_thread=in_thread)

    def django_view(self) -> Callable[..., Any]:
        from countersign.langgraph.receivers import django_view

        return django_view(self)

    # --- shared ---------------------------------------------------------------------------

    def _read_callback(
        self, body: bytes | str, headers: Mapping[str, str]
    ) -> CallbackResult | tuple[str, Decision]:
        if not self.webhook_secret:
            raise CountersignError("InterruptBridge(webhook_secret=…) is needed to verify callbacks")
        try:
            event = verify_webhook(body, headers, self.webhook_secret)
        except CountersignError as exc:
            # 4xx: Countersign does not retry, and a forger learns nothing from a retry.
            return CallbackResult(401, f"not verified: {exc}")
        ours = event.decision.metadata.get(METADATA_KEY)
        if event.type != "decision.resolved" or not isinstance(ours, Mapping) or "thread_id" not in ours:
            return CallbackResult(200, "not a LangGraph interrupt: ignored", decision_id=event.decision.id)
        if ours.get("graph") not in (None, self.name or self.graph.name):
            return CallbackResult(200, "another graph's interrupt: ignored", decision_id=event.decision.id)
        return str(ours["thread_id"]), event.decision

    def _status(
        self, thread_id: str, snapshot: Any, forwarded: list[Forwarded], resumed: int
    ) -> ThreadStatus:
        waiting = [d for f in forwarded for d in f.decisions if not d.is_resolved]
        return ThreadStatus(
            thread_id=thread_id,
            values=snapshot.values,
            waiting_on=waiting,
            resumed=resumed,
            done=not snapshot.interrupts and not snapshot.next,
        )
