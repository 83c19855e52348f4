"""OpenAI Agents SDK: tools with `needs_approval` signed off through Countersign.

A run whose model calls a tool declared with `@function_tool(needs_approval=True)` stops with
`result.interruptions` (ToolApprovalItems). ApprovalRunner puts each one to a person as a
Countersign decision (the tool's arguments as details, *Approve* / *Deny*), then approves or
rejects it on the run's RunState from the outcome (a rejection carries the approver's note,
which the model reads as the tool's output) and runs the agent on from that state.

Two ways to wait:

    runner = ApprovalRunner(agent, defaults={"approver": "alice@example.com"},
                            tools={"issue_refund": {"action": "Refund ${amount} to order #{order}"}})
    result = await runner.run_until_done("Refund order #1042")   # blocking: long-polls

    runner = ApprovalRunner(agent, store=FileRunStore("runs/"), defaults=…,
                            callback_url="https://agent.example.com/countersign/callback",
                            webhook_secret=os.environ["COUNTERSIGN_WEBHOOK_SECRET"])
    await runner.start("Refund order #1042", run_id="ticket-1042")   # durable: runs until it waits
    app = runner.asgi_app()   # or wsgi_app(), django_view(): the callback resumes the run

In the durable style nothing is kept in memory between the pause and the answer: the paused
run is `RunState.to_string()` in the store, and its decisions are found again in Countersign
by an Idempotency-Key made of the runner's name, the run id, the turn and the tool call id.
So the process that takes the callback may be another one, after a restart.

The Agents SDK approves or rejects a call as the model made it: it has no way to run a tool
with other arguments, so these decisions are not editable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from agents import Agent, Runner, RunResult, RunState
from agents.items import ToolApprovalItem

from countersign._tool_asks import ToolAsk, action_text, check_tools, with_tool_fields
from countersign.async_client import AsyncCountersign
from countersign.client import Countersign
from countersign.errors import Conflict, CountersignError
from countersign.models import Decision, Outcome
from countersign.receivers import CallbackResult
from countersign.webhooks import verify_webhook

METADATA_KEY = "openai_agents"  # decision.metadata["openai_agents"] = {"run_id", "call_id", …}
ROUTING_FIELDS = frozenset({"approver", "approvers", "stages", "quorum"})
# A run answered at once forever (a policy approving every call of a loop) must still end.
MAX_ROUNDS = 100
T = TypeVar("T")
# The client of a sync entry point's own event loop (see _with_own_client).
_loop_client: ContextVar[AsyncCountersign | None] = ContextVar("countersign_loop_client", default=None)

NOT_ANSWERED = {
    "expired": "nobody answered before the deadline",
    "cancelled": "the request for sign-off was cancelled",
}


def rejection_message(tool: str, outcome: Outcome) -> str:
    """What the model reads in place of the tool's output when the call was not approved."""
    why = NOT_ANSWERED.get(outcome.status) or f"{outcome.status} by {outcome.by}"
    text = f"{tool} was not run: {why}."
    return f"{text} Note: {outcome.note}" if outcome.note else text


# --- where paused runs wait -------------------------------------------------------------------


class RunStore(Protocol):
    """Keeps each paused run's record (a string) by run id, across processes and restarts:
    a file, a database row, a Redis key. save() replaces the run's record."""

    def load(self, run_id: str) -> str | None: ...

    def save(self, run_id: str, record: str) -> None: ...


@dataclass(frozen=True)
class FileRunStore:
    """One JSON file per run in `directory`, replaced atomically (write, then rename)."""

    directory: str | os.PathLike[str]

    def _path(self, run_id: str) -> Path:
        # Hashed: a run id is the caller's string, never a path.
        return Path(self.directory) / f"{hashlib.sha256(run_id.encode()).hexdigest()[:32]}.json"

    def load(self, run_id: str) -> str | None:
        try:
            return self._path(run_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def save(self, run_id: str, record: str) -> None:
        path = self._path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False) as file:
            file.write(record)
        os.replace(file.name, path)


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands after the runner has done what it could."""

    run_id: str
    waiting_on: list[Decision]  # decisions nobody has answered yet
    resumed: int  # how many times this call ran the agent on from an answer
    done: bool  # finished: no approval pending
    final_output: Any = None  # the run's final output, once done
    result: RunResult | None = field(default=None, repr=False)  # the last RunResult this call got


@dataclass(frozen=True)
class _Asked:
    item: ToolApprovalItem
    decision: Decision


def _arguments(item: ToolApprovalItem) -> dict[str, Any]:
    raw = item.raw_item
    arguments = raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", None)
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments else {}
        except ValueError:
            return {"arguments": arguments}
    return dict(arguments) if isinstance(arguments, Mapping) else {}


def _call_id(item: ToolApprovalItem) -> str:
    raw = item.raw_item
    value = (raw.get("call_id") or raw.get("id")) if isinstance(raw, dict) else None
    value = value or getattr(raw, "call_id", None) or getattr(raw, "id", None)
    if not value:
        raise CountersignError(f"tool call {item.name!r} has no call id: it cannot be asked about safely")
    return str(value)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def _record(state: RunState, result: RunResult | None) -> str:
    done = result is not None and not result.interruptions
    record: dict[str, Any] = {"state": state.to_string(), "done": done}
    if done:
        record["final_output"] = _json_safe(result.final_output)
    return json.dumps(record)


# --- the runner -------------------------------------------------------------------------------


@dataclass
class ApprovalRunner:
    """Runs one agent (openai-agents) with its approvals answered through Countersign.

    agent:          the starting agent; resuming needs the same agent (and its tools).
    store:          where paused runs wait (FileRunStore, or yours); needed by start(),
                    advance() and the callback, not by run_until_done().
    client:         a Countersign or AsyncCountersign (default: from COUNTERSIGN_URL and
                    COUNTERSIGN_API_KEY). The async methods use an AsyncCountersign given here
                    (or one made on first use: call them from one event loop); each *_sync
                    twin runs in an event loop of its own, with a client of its own.
    defaults:       decision fields for every approval, e.g. {"approver": "group:ops",
                    "timeout_minutes": 60}.
    tools:          per tool name: "action", a format string of its arguments or a function
                    of them, instead of "Run <tool>"; and routing, urgency, timeout, … A tool
                    that names approvers is routed only by them.
    callback_url, webhook_secret: where Countersign POSTs the outcome, and the whsec_…
                    secret(s) that verify it.
    name:           keeps two runners' Idempotency-Keys apart (default: the agent's name).
    run_kwargs:     passed to every Runner.run (run_config, max_turns, hooks, context, …).
    rejection_message: what the model reads when a call is not approved.
    on_forward:     called once per new decision this runner creates.
    """

    agent: Agent[Any]
    store: RunStore | None = None
    client: Countersign | AsyncCountersign | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    tools: Mapping[str, ToolAsk] = field(default_factory=dict)
    callback_url: str | None = None
    webhook_secret: str | Sequence[str] | None = None
    name: str | None = None
    run_kwargs: Mapping[str, Any] = field(default_factory=dict)
    rejection_message: Callable[[str, Outcome], str] = rejection_message
    on_forward: Callable[[Decision], Any] | None = None

    def __post_init__(self) -> None:
        check_tools("ApprovalRunner", self.tools)
        self._async_client: AsyncCountersign | None = (
            self.client if isinstance(self.client, AsyncCountersign) else None
        )
        self._seen: set[str] = set()
        self._guard = threading.Lock()
        # One resume at a time per run: a callback retried while the first delivery is still
        # resuming must find the calls answered, not run the agent on a second time.
        self._thread_locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._async_locks: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @property
    def _name(self) -> str:
        return self.name or self.agent.name

    def _client(self) -> AsyncCountersign:
        own = _loop_client.get()
        if own is not None:
            return own
        if self._async_client is None:
            settings = self.client.settings if self.client is not None else None
            self._async_client = (
                AsyncCountersign(settings.base_url, settings.api_key) if settings else AsyncCountersign()
            )
        return self._async_client

    # --- asking -----------------------------------------------------------------------------

    def _request(self, run_id: str, turn: int, item: ToolApprovalItem) -> tuple[str, dict[str, Any]]:
        """(Idempotency-Key, body) for one tool call: the same every time it is asked, from
        any process, so asking again finds the decision made the first time."""
        tool, call_id, args = item.name or "tool", _call_id(item), _arguments(item)
        action, overflow = action_text(f"Run {tool}")
        agent_name = getattr(item.agent, "name", None) or self.agent.name
        ask = with_tool_fields(
            {
                "action": action,
                "context": overflow or f"The agent {agent_name!r} asks to call {tool} with these arguments.",
                "details": args,
            },
            tool,
            args,
            self.tools,
        )
        body = {**self.defaults, **ask}
        if ROUTING_FIELDS & set(ask):
            body = {k: v for k, v in body.items() if k not in ROUTING_FIELDS or k in ask}
        # The SDK approves or rejects a call as made: nothing here is editable.
        body.update(options=["approve", "deny"], allow_edit=False, response="choice")
        body["metadata"] = {
            **dict(self.defaults.get("metadata") or {}),
            **dict(ask.get("metadata") or {}),
            METADATA_KEY: {
                "runner": self._name,
                "run_id": run_id,
                "turn": turn,
                "call_id": call_id,
                "tool": tool,
                "agent": agent_name,
            },
        }
        if self.callback_url:
            body["callback_url"] = self.callback_url
        scope = "\x00".join([self._name, run_id, str(turn), call_id])
        return f"openai-agents:{hashlib.sha256(scope.encode()).hexdigest()[:40]}", _json_safe(body)

    async def _forward(self, client: AsyncCountersign, run_id: str, state: RunState) -> list[_Asked]:
        turn = int(state.to_json().get("current_turn") or 0)
        asked = []
        for item in state.get_interruptions():
            key, body = self._request(run_id, turn, item)
            try:
                decision = await client.create(body.pop("action"), idempotency_key=key, **body)
            except Conflict as exc:
                if exc.code != "idempotency_conflict":
                    raise
                raise CountersignError(
                    f"run {run_id}: this tool call was asked before with other settings (defaults, "
                    "tools, callback_url or name differ): give the runner the same settings in every process"
                ) from exc
            self._announce(decision)
            asked.append(_Asked(item, decision))
        return asked

    def _announce(self, decision: Decision) -> None:
        if self.on_forward is None:
            return
        with self._guard:
            new = decision.id not in self._seen
            self._seen.add(decision.id)
        if new:
            self.on_forward(decision)

    def _apply(self, state: RunState, asked: list[_Asked]) -> None:
        for each in asked:
            outcome = each.decision.outcome
            if outcome is not None and outcome.approved:
                state.approve(each.item)
            else:
                tool = each.item.name or "tool"
                reason = self.rejection_message(tool, outcome) if outcome else f"{tool} was not run."
                state.reject(each.item, rejection_message=reason)

    # --- blocking style ---------------------------------------------------------------------

    async def run_until_done(
        self, input: Any, *, run_id: str | None = None, timeout: float | None = None
    ) -> RunResult:
        """Runner.run, then for as long as the run stops for approvals: ask, wait for every
        answer (long-poll), approve or reject, and run on. Returns the last RunResult: its
        final_output, or its interruptions if `timeout` seconds passed with one unanswered.
        Needs no store and no callback URL; the run lives in this process only."""
        run_id = run_id or f"run-{os.urandom(8).hex()}"
        client = self._client()
        deadline = None if timeout is None else time.monotonic() + timeout
        result = await Runner.run(self.agent, input, **self.run_kwargs)
        for _ in range(MAX_ROUNDS):
            if not result.interruptions:
                return result
            state = result.to_state()
            answered = []
            for each in await self._forward(client, run_id, state):
                remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
                decision = await client.wait(each.decision.id, timeout=remaining)
                if decision.is_pending:
                    return result
                answered.append(_Asked(each.item, decision))
            self._apply(state, answered)
            result = await Runner.run(self.agent, state, **self.run_kwargs)
        raise CountersignError(f"run {run_id} still stopped for approvals after {MAX_ROUNDS} rounds")

    # --- the same from sync code (a script, a WSGI app, a Django view) ------------------------

    def _sync(self, work: Callable[[], Awaitable[T]]) -> T:
        return _run_sync(lambda: self._with_own_client(work()))

    def run_until_done_sync(
        self, input: Any, *, run_id: str | None = None, timeout: float | None = None
    ) -> RunResult:
        return self._sync(lambda: self.run_until_done(input, run_id=run_id, timeout=timeout))

    def start_sync(self, input: Any, *, run_id: str) -> RunStatus:
        return self._sync(lambda: self.start(input, run_id=run_id))

    def advance_sync(self, run_id: str) -> RunStatus:
        with self._thread_lock(run_id):
            return self._sync(lambda: self.advance(run_id))

    def wait_and_resume_sync(self, run_id: str, *, timeout: float | None = None) -> RunStatus:
        return self._sync(lambda: self.wait_and_resume(run_id, timeout=timeout))

    # --- durable style ----------------------------------------------------------------------

    def _store(self) -> RunStore:
        if self.store is None:
            raise CountersignError("ApprovalRunner(store=…) is needed to pause a run and resume it later")
        return self.store

    async def start(self, input: Any, *, run_id: str) -> RunStatus:
        """Runner.run until the run finishes or stops for approvals; a stopped run is saved in
        the store and its approvals are asked (with the callback URL). Resume it with
        advance() (the callback calls it), or wait_and_resume() without a callback."""
        store = self._store()
        if store.load(run_id) is not None:
            raise CountersignError(f"run {run_id} was started before: pick a new run id")
        result = await Runner.run(self.agent, input, **self.run_kwargs)
        state = result.to_state()
        store.save(run_id, _record(state, result))
        async with self._async_lock(run_id):
            return await self._advance(run_id, resumed=0, result=result)

    async def advance(self, run_id: str) -> RunStatus:
        """Ask the run's pending approvals (again: idempotent), and if all are answered,
        approve or reject them and run on; again while the run stops for approvals already
        answered. Safe to call any number of times, from any process that has the store."""
        async with self._async_lock(run_id):
            return await self._advance(run_id, resumed=0, result=None)

    async def _advance(self, run_id: str, *, resumed: int, result: RunResult | None) -> RunStatus:
        store, client = self._store(), self._client()
        for _ in range(MAX_ROUNDS):
            stored = store.load(run_id)
            if stored is None:
                raise CountersignError(f"run {run_id} is not in the store")
            record = json.loads(stored)
            if record.get("done"):
                return RunStatus(run_id, [], resumed, True, record.get("final_output"), result)
            state = await RunState.from_string(self.agent, record["state"])
            asked = await self._forward(client, run_id, state)
            waiting = [each.decision for each in asked if not each.decision.is_resolved]
            if waiting or not asked:
                return RunStatus(run_id, waiting, resumed, False, None, result)
            self._apply(state, asked)
            result = await Runner.run(self.agent, state, **self.run_kwargs)
            resumed += 1
            store.save(run_id, _record(result.to_state(), result))
        raise CountersignError(f"run {run_id} was still being resumed after {MAX_ROUNDS} rounds")

    async def wait_and_resume(self, run_id: str, *, timeout: float | None = None) -> RunStatus:
        """Without a callback URL: long-poll the run's approvals and run on as they are
        answered, until it finishes, or `timeout` seconds pass with one unanswered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        resumed = 0
        while True:
            status = await self.advance(run_id)
            resumed += status.resumed
            remaining = None if deadline is None else deadline - time.monotonic()
            if not status.waiting_on or (remaining is not None and remaining <= 0):
                return RunStatus(
                    run_id, status.waiting_on, resumed, status.done, status.final_output, status.result
                )
            await self._client().wait(status.waiting_on[0].id, timeout=remaining)

    async def ahandle_callback(self, body: bytes | str, headers: Mapping[str, str]) -> CallbackResult:
        """A callback POST, verified, then the run it names advanced. The status code is for
        the receiver to answer with: 2xx ends Countersign's retries, 5xx asks for one."""
        early = self._read_callback(body, headers)
        if isinstance(early, CallbackResult):
            return early
        run_id, decision = early
        status = await self.advance(run_id)
        return CallbackResult(200, "run advanced", run_id, decision.id, status.resumed)

    def handle_callback(self, body: bytes | str, headers: Mapping[str, str]) -> CallbackResult:
        """ahandle_callback for a WSGI server or a sync Django view (a thread without an
        event loop); one resume at a time per run in this process."""
        early = self._read_callback(body, headers)
        if isinstance(early, CallbackResult):
            return early
        run_id, decision = early
        status = self.advance_sync(run_id)
        return CallbackResult(200, "run advanced", run_id, decision.id, status.resumed)

    def _read_callback(
        self, body: bytes | str, headers: Mapping[str, str]
    ) -> CallbackResult | tuple[str, Decision]:
        if not self.webhook_secret:
            raise CountersignError("ApprovalRunner(webhook_secret=…) is needed to verify callbacks")
        try:
            event = verify_webhook(body, headers, self.webhook_secret)
        except CountersignError as exc:
            return CallbackResult(401, f"not verified: {exc}")  # a 4xx: not retried
        ours = event.decision.metadata.get(METADATA_KEY)
        if event.type != "decision.resolved" or not isinstance(ours, Mapping) or "run_id" not in ours:
            return CallbackResult(
                200, "not an OpenAI Agents approval: ignored", decision_id=event.decision.id
            )
        if ours.get("runner") != self._name:
            return CallbackResult(200, "another runner's approval: ignored", decision_id=event.decision.id)
        return str(ours["run_id"]), event.decision

    # --- receivers --------------------------------------------------------------------------

    def wsgi_app(self) -> Callable[..., Any]:
        from countersign.receivers import wsgi_app

        return wsgi_app(self)

    def asgi_app(self) -> Callable[..., Any]:
        from countersign.receivers import asgi_app

        return asgi_app(self)

    def django_view(self) -> Callable[..., Any]:
        from countersign.receivers import django_view

        return django_view(self)

    # --- plumbing ---------------------------------------------------------------------------

    def _thread_lock(self, run_id: str) -> threading.Lock:
        with self._guard:
            lock = self._thread_locks.get(run_id)
            if lock is None:
                lock = self._thread_locks[run_id] = threading.Lock()
            return lock

    def _async_lock(self, run_id: str) -> asyncio.Lock:
        # An asyncio lock belongs to one event loop: one per loop and run.
        key = (id(asyncio.get_running_loop()), run_id)
        with self._guard:
            lock = self._async_locks.get(key)
            if lock is None:
                lock = self._async_locks[key] = asyncio.Lock()
            return lock

    async def _with_own_client(self, work: Awaitable[T]) -> T:
        """Run `work` (a sync entry point's, in an event loop of its own) with a client of
        that loop: an httpx client cannot move between event loops."""
        settings = self.client.settings if self.client is not None else None
        async with (
            AsyncCountersign(settings.base_url, settings.api_key) if settings else AsyncCountersign()
        ) as client:
            token = _loop_client.set(client)
            try:
                return await work
            finally:
                _loop_client.reset(token)


def _run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to the end from sync code: in this thread if it has no event loop
    running, else in a fresh thread (asyncio.run cannot nest)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())  # type: ignore[arg-type]
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()  # type: ignore[arg-type]


__all__ = [
    "ApprovalRunner",
    "FileRunStore",
    "RunStatus",
    "RunStore",
    "rejection_message",
]
