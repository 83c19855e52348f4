"""The blocking client.

client = Countersign()          # COUNTERSIGN_URL, COUNTERSIGN_API_KEY
outcome = client.request_approval("Refund $120 to order #1042", details={"amount": 120},
                                  approver="alice@example.com")
if outcome.approved: ...
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Unpack

import httpx

from countersign import _base, errors
from countersign._base import DecisionFields
from countersign.models import Decision, DecisionPage, Outcome, Status


class Countersign:
    """A client for one organization (the API key's). Safe to share between threads.

    Connection errors, 429 and 502/503/504 are retried `max_retries` times with backoff; a
    create is retried with the same Idempotency-Key, so a retry never asks twice.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = _base.Settings.resolve(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self._http = httpx.Client(
            base_url=self.settings.base_url,
            headers=self.settings.headers(),
            timeout=timeout,
            transport=transport,
        )
        self._sleep: Callable[[float], None] = time.sleep

    # --- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Countersign:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, int]:
        """Send with retries. Returns the last answer (possibly an error status) and how many
        retries it took."""
        retries = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if retries >= self.settings.max_retries:
                    raise errors.ConnectionFailed(f"{method} {path}: {exc!r}") from exc
                response = None
            else:
                if not _base.should_retry(response) or retries >= self.settings.max_retries:
                    return response, retries
            retries += 1
            self._sleep(self.settings.retry_delay(retries, response))

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return _base.json_of(self._send(method, path, **kwargs)[0])

    # --- the API ----------------------------------------------------------------------------

    def create(
        self, action: str, *, idempotency_key: str | None = None, **fields: Unpack[DecisionFields]
    ) -> Decision:
        """POST /decisions. Without an idempotency_key one is made up, so the retries of this
        call are the same request; pass your own to make a retry of *your* call safe too."""
        body = _base.decision_body(action, dict(fields))
        headers = {"Idempotency-Key": idempotency_key or _base.new_idempotency_key()}
        return Decision.from_json(self._json("POST", "/decisions", json=body, headers=headers))

    def get(self, decision_id: str, *, wait: float | None = None) -> Decision:
        """GET /decisions/{id}; with `wait` (≤ 60 s), held until it leaves pending."""
        params = {"wait": _base.wait_param(wait)} if wait else {}
        timeout = _base.long_poll_timeout(self.settings, wait)
        return Decision.from_json(
            self._json("GET", f"/decisions/{decision_id}", params=params, timeout=timeout)
        )

    def wait(self, decision_id: str, *, timeout: float | None = None) -> Decision:
        """Long-poll until the decision is resolved, or `timeout` seconds pass (then the
        pending decision is returned). No timeout: until resolved, which the service's own
        deadline guarantees."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = _base.MAX_LONG_POLL_SECONDS if deadline is None else deadline - time.monotonic()
            decision = self.get(decision_id, wait=min(max(remaining, 0.0), _base.MAX_LONG_POLL_SECONDS))
            if not decision.is_pending or (deadline is not None and time.monotonic() >= deadline):
                return decision

    def cancel(self, decision_id: str) -> Decision:
        """POST /decisions/{id}/cancel. Raises Conflict unless it was pending."""
        response, retries = self._send("POST", f"/decisions/{decision_id}/cancel")
        if response.status_code == 409 and retries:
            # Our first attempt may have cancelled it before the connection broke.
            decision = self.get(decision_id)
            if decision.status == "cancelled":
                return decision
        return Decision.from_json(_base.json_of(response))

    def list(
        self,
        *,
        status: Status | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> DecisionPage:
        """GET /decisions: one page, newest first."""
        params = _base.list_params(
            status=status,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        )
        return DecisionPage.from_json(self._json("GET", "/decisions", params=params))

    def iter_decisions(
        self,
        *,
        status: Status | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Decision]:
        """Every matching decision, newest first, fetching pages as it goes."""
        cursor = None
        while True:
            page = self.list(
                status=status,
                created_after=created_after,
                created_before=created_before,
                limit=page_size,
                cursor=cursor,
            )
            yield from page.results
            if not (cursor := page.next_cursor):
                return

    def export_audit_csv(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        decision: str | None = None,
        event: str | None = None,
        actor: str | None = None,
    ) -> Iterator[bytes]:
        """GET /audit/export.csv (a key with the audit scope), streamed: the file's bytes as they
        arrive (UTF-8 with a byte order mark), events with `start` <= time < `end`. Getting the
        answer is retried like any call; a transfer that breaks midway raises ConnectionFailed,
        since a half-read file cannot be resumed."""
        path = "/audit/export.csv"
        params = _base.audit_params(start=start, end=end, decision=decision, event=event, actor=actor)
        # The file takes as long as it takes: no read timeout once the answer has begun.
        timeout = httpx.Timeout(self.settings.timeout, read=None)
        retries = 0
        while True:
            response = None
            try:
                with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                    if not _base.should_retry(response) or retries >= self.settings.max_retries:
                        if response.status_code >= 400:
                            response.read()
                            raise errors.error_from_response(response)
                        try:
                            yield from response.iter_bytes()
                        except httpx.TransportError as exc:
                            raise errors.ConnectionFailed(f"GET {path} broke off: {exc!r}") from exc
                        return
            except httpx.TransportError as exc:
                if retries >= self.settings.max_retries:
                    raise errors.ConnectionFailed(f"GET {path}: {exc!r}") from exc
                response = None
            retries += 1
            self._sleep(self.settings.retry_delay(retries, response))

    def request_approval(
        self,
        action: str,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        on_created: Callable[[Decision], None] | None = None,
        **fields: Unpack[DecisionFields],
    ) -> Outcome:
        """Ask, and block until the decision is resolved; returns its outcome (approved,
        denied, responded, expired or cancelled). `on_created` sees the new decision first
        (e.g. to log its id). Raises ApprovalTimeout if `timeout` seconds pass first."""
        decision = self.create(action, idempotency_key=idempotency_key, **fields)
        if on_created is not None:
            on_created(decision)
        decision = self.wait(decision.id, timeout=timeout)
        if decision.outcome is None:
            raise errors.ApprovalTimeout(decision)
        return decision.outcome
