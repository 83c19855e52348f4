"""Exceptions. Every error answer of the API becomes an APIError subclass that carries the
contract's error body: `{"error": {"code", "message", "fields"}}`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from countersign.models import Decision


class CountersignError(Exception):
    """Base of everything this package raises."""


class APIError(CountersignError):
    """The service answered with an error status."""

    def __init__(
        self,
        *,
        status_code: int,
        code: str,
        message: str,
        fields: dict[str, Any] | None = None,
        body: Any = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.fields: dict[str, Any] = fields or {}
        self.body = body  # the parsed JSON (or the text) exactly as the service sent it
        self.headers = headers or httpx.Headers()


class InvalidRequest(APIError):
    """400: the input was refused; `fields` says which and why."""


class AuthenticationError(APIError):
    """401: no API key, a wrong one, or a revoked one."""


class PermissionDenied(APIError):
    """403: the key lacks the scope this endpoint needs."""


class NotFound(APIError):
    """404: no such decision in this key's organization."""


class Conflict(APIError):
    """409: e.g. cancelling a decision that is no longer pending, or an Idempotency-Key
    reused with a different body."""


class PayloadTooLarge(APIError):
    """413."""


class RateLimited(APIError):
    """429, after the client's own retries ran out. `retry_after` is in seconds, if given."""

    @property
    def retry_after(self) -> float | None:
        return _seconds(self.headers.get("retry-after"))


class ServerError(APIError):
    """5xx, after the client's own retries ran out."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
}


class ConnectionFailed(CountersignError):
    """The service could not be reached (after retries). `__cause__` is the httpx error."""


class ApprovalTimeout(CountersignError):
    """request_approval(timeout=…) stopped waiting before anyone answered. The decision is
    still pending on the service (its own deadline still applies); `decision` is its last state."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"{decision.id} is still pending")
        self.decision = decision


class WebhookVerificationError(CountersignError):
    """A callback's signature, timestamp or body is not what Countersign would send."""


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for an error answer, with the contract's error body when there is one
    (a proxy in front of the service may answer with HTML: then the code is `http_<status>`)."""
    status = response.status_code
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = response.text
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or f"http_{status}")
        message = str(error.get("message") or response.reason_phrase)
        fields = error.get("fields") if isinstance(error.get("fields"), dict) else {}
    else:
        code, message, fields = f"http_{status}", (str(body)[:200] or response.reason_phrase), {}
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return kind(
        status_code=status, code=code, message=message, fields=fields, body=body, headers=response.headers
    )


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare enough that the caller's own backoff will do
