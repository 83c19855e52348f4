"""What the sync and async clients share: configuration, request bodies, the retry policy
and reading answers. Everything here is free of I/O, so the two clients differ only in how
they send and sleep."""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypedDict

import httpx

from countersign import errors
from countersign.models import OnTimeout, ResponseType, Urgency, Verification

__version__ = "0.1.0"

USER_AGENT = f"countersign-python/{__version__}"
MAX_LONG_POLL_SECONDS = 60.0  # the service holds a request at most this long
# A long-poll is answered after at most `wait` seconds; give the network this much on top.
LONG_POLL_GRACE_SECONDS = 30.0
# Worth trying again: rate limited, or a proxy/load balancer in front of the service hiccupped.
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class Stage(TypedDict):
    approvers: list[str]
    quorum: Literal["any", "all"] | int


class EscalationLevel(TypedDict):
    after_minutes: float
    approvers: list[str]


class DecisionFields(TypedDict, total=False):
    """Everything POST /decisions takes besides `action` (see the contract). Leave a field out
    to let the service (or the organization's policy) decide it."""

    context: str
    details: dict[str, Any]
    approver: str
    approvers: list[str]
    quorum: Literal["any", "all"] | int
    stages: list[Stage]
    options: list[str]
    response: ResponseType
    allow_edit: bool
    urgency: Urgency
    timeout_minutes: float
    on_timeout: OnTimeout
    # "link" (the default): an email or Slack click will do; "session" or "passkey": only the
    # approver portal, freshly signed in or with a passkey.
    verification: Verification
    # The email address of the person the agent acts for: never asked, can never approve it.
    requested_by: str
    # True (the default): nobody approves two stages of this decision.
    distinct_stage_approvers: bool
    escalation: list[EscalationLevel]
    escalation_repeat: int
    reminders: list[float]
    callback_url: str
    metadata: dict[str, Any]


DECISION_FIELDS = frozenset(DecisionFields.__annotations__)


def decision_body(action: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON body for POST /decisions. Fields left out or None are not sent at all: a
    policy fills in only what the agent did not send, so sending defaults would override it."""
    unknown = sorted(set(fields) - DECISION_FIELDS)
    if unknown:
        raise TypeError(f"unknown decision field(s): {', '.join(unknown)}")
    return {"action": action, **{name: value for name, value in fields.items() if value is not None}}


def new_idempotency_key() -> str:
    return f"cs-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Settings:
    base_url: str
    api_key: str
    timeout: float
    max_retries: int
    backoff: float
    max_backoff: float

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout: float,
        max_retries: int,
        backoff: float,
        max_backoff: float,
    ) -> Settings:
        base_url = base_url or os.environ.get("COUNTERSIGN_URL") or "http://127.0.0.1:8000"
        api_key = api_key or os.environ.get("COUNTERSIGN_API_KEY")
        if not api_key:
            raise errors.CountersignError("No API key: pass api_key=… or set COUNTERSIGN_API_KEY.")
        return cls(base_url.rstrip("/"), api_key, timeout, max_retries, backoff, max_backoff)

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    def retry_delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds before retry number `attempt` (1, 2, …): the service's Retry-After when it
        gives one, else capped exponential backoff with jitter, so many clients spread out."""
        if response is not None and (retry_after := response.headers.get("retry-after")):
            try:
                return min(max(float(retry_after), 0.0), self.max_backoff * 4)
            except ValueError:
                pass
        base = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return base * random.uniform(0.5, 1.0)


def should_retry(response: httpx.Response) -> bool:
    return response.status_code in RETRYABLE_STATUS


def long_poll_timeout(settings: Settings, wait: float | None) -> httpx.Timeout:
    if not wait:
        return httpx.Timeout(settings.timeout)
    return httpx.Timeout(settings.timeout, read=wait + LONG_POLL_GRACE_SECONDS)


def wait_param(seconds: float) -> str:
    seconds = min(max(seconds, 0.0), MAX_LONG_POLL_SECONDS)
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def list_params(
    *,
    status: str | None,
    created_after: datetime | str | None,
    created_before: datetime | str | None,
    limit: int | None,
    cursor: str | None,
) -> dict[str, str]:
    params = {
        "status": status,
        "created_after": created_after.isoformat() if isinstance(created_after, datetime) else created_after,
        "created_before": (
            created_before.isoformat() if isinstance(created_before, datetime) else created_before
        ),
        "limit": str(limit) if limit is not None else None,
        "cursor": cursor,
    }
    return {name: value for name, value in params.items() if value is not None}


def audit_params(
    *,
    start: datetime | str | None,
    end: datetime | str | None,
    decision: str | None,
    event: str | None,
    actor: str | None,
) -> dict[str, str]:
    """Filters of GET /audit/events and /audit/export.csv: `from` <= time < `to`."""
    params = {
        "from": start.isoformat() if isinstance(start, datetime) else start,
        "to": end.isoformat() if isinstance(end, datetime) else end,
        "decision": decision,
        "event": event,
        "actor": actor,
    }
    return {name: value for name, value in params.items() if value is not None}


def json_of(response: httpx.Response) -> dict[str, Any]:
    """The body of a successful answer, or the APIError the answer stands for."""
    if response.status_code >= 400:
        raise errors.error_from_response(response)
    try:
        data = response.json()
    except ValueError:
        raise errors.APIError(
            status_code=response.status_code,
            code="invalid_response",
            message="The service answered with something that is not JSON.",
            body=response.text,
            headers=response.headers,
        ) from None
    if not isinstance(data, dict):
        raise errors.APIError(
            status_code=response.status_code,
            code="invalid_response",
            message="The service answered with JSON that is not an object.",
            body=data,
            headers=response.headers,
        )
    return data
