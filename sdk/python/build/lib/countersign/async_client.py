"""The asyncio client: the same calls as Countersign, awaited.

async with AsyncCountersign() as client:
    outcome = await client.request_approval("Deploy 4.2 to production", approver="alice@example.com")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Unpack

import httpx

from countersign import _base, errors
from countersign._base import DecisionFields
from countersign.models import Decision, DecisionPage, Outcome, Status


class AsyncCountersign:
    """See Countersign: same retries, same idempotency, same results."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = _base.Settings.resolve(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self._http = httpx.AsyncClient(
            base_url=self.settings.base_url,
            headers=self.settings.headers(),
            timeout=timeout,
            transport=transport,
        )
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncCountersign:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, int]:
        retries = 0
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if retries >= self.settings.max_retries:
                    raise errors.ConnectionFailed(f"{method} {path}: {exc!r}") from exc
                response = None
            else:
                if not _base.should_retry(response) or retries >= self.settings.max_retries:
                    return response, retries
            retries += 1
            await self._sleep(self.settings.retry_delay(retries, response))

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response, _ = await self._send(method, path, **kwargs)
        return _base.json_of(response)

    async def create(
        self, action: str, *, idempotency_key: str | None = None, **fields: Unpack[DecisionFields]
    ) -> Decision:
        body = _base.decision_body(action, dict(fields))
        headers = {"Idempotency-Key": idempotency_key or _base.new_idempotency_key()}
        return Decision.from_json(await self._json("POST", "/decisions", json=body, headers=headers))

    async def get(self, decision_id: str, *, wait: float | None = None) -> Decision:
        params = {"wait": _base.wait_param(wait)} if wait else {}
        timeout = _base.long_poll_timeout(self.settings, wait)
        return Decision.from_json(
            await self._json("GET", f"/decisions/{decision_id}", params=params, timeout=timeout)
        )

    async def wait(self, decision_id: str, *, timeout: float | None = None) -> Decision:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = _base.MAX_LONG_POLL_SECONDS if deadline is None else deadline - time.monotonic()
            decision = await self.get(decision_id, wait=min(max(remaining, 0.0), _base.MAX_LONG_POLL_SECONDS))
            if not decision.is_pending or (deadline is not None and time.monotonic() >= deadline):
                return decision

    async def cancel(self, decision_id: str) -> Decision:
        response, retries = await self._send("POST", f"/decisions/{decision_id}/cancel")
        if response.status_code == 409 and retries:
            decision = await self.get(decision_id)
            if decision.status == "cancelled":
                return decision
        return Decision.from_json(_base.json_of(response))

    async def list(
        self,
        *,
        status: Status | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> DecisionPage:
        params = _base.list_params(
            status=status,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        )
        return DecisionPage.from_json(await self._json("GET", "/decisions", params=params))

    async def iter_decisions(
        self,
        *,
        status: Status | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Decision]:
        cursor = None
        while True:
            page = await self.list(
                status=status,
                created_after=created_after,
                created_before=created_before,
                limit=page_size,
                cursor=cursor,
            )
            for decision in page.results:
                yield decision
            if not (cursor := page.next_cursor):
                return

    async def request_approval(
        self,
        action: str,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        on_created: Callable[[Decision], Any] | None = None,
        **fields: Unpack[DecisionFields],
    ) -> Outcome:
        decision = await self.create(action, idempotency_key=idempotency_key, **fields)
        if on_created is not None and asyncio.iscoroutine(result := on_created(decision)):
            await result
        decision = await self.wait(decision.id, timeout=timeout)
        if decision.outcome is None:
            raise errors.ApprovalTimeout(decision)
        return decision.outcome
