"""Blocking style: a node (or a tool) that asks Countersign and waits for the answer by
long-poll, then carries on. Simple, and needs no public callback URL; the process waits.

    graph.add_node("approval", approval_node(
        client, action=lambda s: f"Refund ${s['amount']} to order #{s['order']}",
        details=lambda s: {"amount": s["amount"], "order": s["order"]}))
    # state["approval"] == {"status": "approved", "approved": True, "by": …, "note": …, …}

    @requires_approval(client, approver="alice@example.com")
    def send_email(to: str, subject: str, body: str) -> str: ...

Inside a graph run the Idempotency-Key comes from the thread, the task and what is asked: if
the process dies while waiting and the graph is run again from its checkpoint, it finds the
same decision (answered or not) instead of asking again.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from countersign.async_client import AsyncCountersign
from countersign.client import Countersign
from countersign.models import Decision, Outcome

State = Any
Value = Any  # a value, or a function of the state giving it
F = TypeVar("F", bound=Callable[..., Any])


def graph_idempotency_key(body: Mapping[str, Any]) -> str | None:
    """A key for asking `body` from within this graph task, or None outside a graph run."""
    try:
        from langgraph.config import get_config

        configurable = get_config().get("configurable", {})
    except (ImportError, RuntimeError):  # not inside a LangGraph run
        return None
    thread_id, namespace = configurable.get("thread_id"), configurable.get("checkpoint_ns")
    if thread_id is None or namespace is None:
        return None
    what = json.dumps(body, sort_keys=True, default=str, ensure_ascii=False)
    digest = hashlib.sha256(f"{thread_id}\x00{namespace}\x00{what}".encode()).hexdigest()[:40]
    return f"langgraph-node:{digest}"


def _evaluate(value: Value, state: State) -> Any:
    return value(state) if callable(value) else value


def approval_node(
    client: Countersign | AsyncCountersign | None = None,
    *,
    action: str | Callable[[State], str],
    key: str = "approval",
    timeout: float | None = None,
    on_created: Callable[[Decision], Any] | None = None,
    **fields: Value,
) -> Callable[[State], Any]:
    """A node that asks for sign-off and writes the outcome into state[key] as a dict
    (see Outcome.as_dict). `action` and every decision field (details, approver, urgency, …)
    may be a value or a function of the state. With an AsyncCountersign the node is async.
    Route on it with a conditional edge: `lambda s: "go" if s["approval"]["approved"] else "stop"`."""

    def request(state: State) -> tuple[str, dict[str, Any]]:
        resolved = {name: _evaluate(value, state) for name, value in fields.items()}
        return _evaluate(action, state), resolved

    if isinstance(client, AsyncCountersign):
        async_client = client

        async def ask_and_wait_async(state: State) -> dict[str, Any]:
            what, resolved = request(state)
            outcome = await async_client.request_approval(
                what,
                timeout=timeout,
                on_created=on_created,
                idempotency_key=graph_idempotency_key({"action": what, **resolved}),
                **resolved,
            )
            return {key: outcome.as_dict()}

        return ask_and_wait_async

    blocking_client = _blocking_client(client)

    def ask_and_wait(state: State) -> dict[str, Any]:
        what, resolved = request(state)
        outcome = blocking_client().request_approval(
            what,
            timeout=timeout,
            on_created=on_created,
            idempotency_key=graph_idempotency_key({"action": what, **resolved}),
            **resolved,
        )
        return {key: outcome.as_dict()}

    return ask_and_wait


def not_approved_message(name: str, outcome: Outcome) -> str:
    """What a tool returns when it was not approved: words a model understands."""
    who = "nobody answered in time" if outcome.status == "expired" else f"{outcome.status} by {outcome.by}"
    text = f"{name} was not run: {who}."
    return f"{text} Note: {outcome.note}" if outcome.note else text


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _described(action: str | Callable[..., str] | None, name: str, arguments: dict[str, Any]) -> str:
    """The decision's action for one call: a function of the arguments, a format string of
    them, or "Run <name>"."""
    if callable(action):
        return action(**arguments)
    if action is not None:
        return action.format(**arguments)
    return f"Run {name}"


def requires_approval(
    client: Countersign | AsyncCountersign | None = None,
    *,
    action: str | Callable[..., str] | None = None,
    allow_edit: bool = True,
    timeout: float | None = None,
    on_created: Callable[[Decision], Any] | None = None,
    on_not_approved: Callable[[str, Outcome], Any] = not_approved_message,
    **fields: Any,
) -> Callable[[F], F]:
    """Decorate a tool function so each call is signed off first. The call's arguments are
    the decision's details (the approver may edit them if allow_edit); the function then runs
    with the details as approved. Not approved: it returns on_not_approved(name, outcome)
    instead of running. `action` is a format string of the arguments ("Email {to}"), a
    function of them, or by default "Run <name>". Put it under LangChain's @tool: the
    signature is kept."""

    blocking_client = _blocking_client(client)

    def decorate(function: F) -> F:
        signature = inspect.signature(function)
        name = function.__name__

        def request(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[inspect.BoundArguments, str, dict]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            # Injected values (a runtime, a state) are not facts for a person to review.
            details = {k: v for k, v in bound.arguments.items() if _is_json(v)}
            what = _described(action, name, bound.arguments)
            return bound, what, {"details": details, "allow_edit": allow_edit, **fields}

        def approved_arguments(bound: inspect.BoundArguments, outcome: Outcome) -> inspect.BoundArguments:
            for argument, value in outcome.details.items():
                if argument in bound.arguments:
                    bound.arguments[argument] = value
            return bound

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                bound, what, ask = request(args, kwargs)
                key = graph_idempotency_key({"action": what, **ask})
                outcome = await _ask_async(
                    client, blocking_client, what, ask, key=key, timeout=timeout, on_created=on_created
                )
                if not outcome.approved:
                    return on_not_approved(name, outcome)
                bound = approved_arguments(bound, outcome)
                return await function(*bound.args, **bound.kwargs)

            return guarded_async  # type: ignore[return-value]

        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            bound, what, ask = request(args, kwargs)
            key = graph_idempotency_key({"action": what, **ask})
            outcome = blocking_client().request_approval(
                what, timeout=timeout, on_created=on_created, idempotency_key=key, **ask
            )
            if not outcome.approved:
                return on_not_approved(name, outcome)
            bound = approved_arguments(bound, outcome)
            return function(*bound.args, **bound.kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


async def _ask_async(
    client: Countersign | AsyncCountersign | None,
    blocking_client: Callable[[], Countersign],
    what: str,
    ask: dict[str, Any],
    *,
    key: str | None,
    timeout: float | None,
    on_created: Callable[[Decision], Any] | None,
) -> Outcome:
    if isinstance(client, AsyncCountersign):
        return await client.request_approval(
            what, timeout=timeout, on_created=on_created, idempotency_key=key, **ask
        )
    # A blocking client must not block the event loop: wait in a worker thread.
    call: Callable[[], Outcome] = functools.partial(
        blocking_client().request_approval,
        what,
        timeout=timeout,
        on_created=on_created,
        idempotency_key=key,
        **ask,
    )
    return await asyncio.to_thread(call)


def _blocking_client(client: Countersign | AsyncCountersign | None) -> Callable[[], Countersign]:
    """The blocking client to use, made on first use: COUNTERSIGN_API_KEY need not be set
    when the graph is built, only when it runs."""
    made: list[Countersign] = []

    def get() -> Countersign:
        if isinstance(client, Countersign):
            return client
        if not made:
            # A sync tool given the async client talks to the same service.
            settings = client.settings if isinstance(client, AsyncCountersign) else None
            made.append(Countersign(settings.base_url, settings.api_key) if settings else Countersign())
        return made[0]

    return get
