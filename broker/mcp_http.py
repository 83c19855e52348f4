"""/mcp: Countersign's MCP tools (decisions/mcp_tools.py) over streamable HTTP, next to Django
in one ASGI app (broker/asgi.py).

Before any MCP message is read, the request passes what the REST API's requests pass: the
Host against ALLOWED_HOSTS, the API key (Authorization: Bearer) and its `decisions` scope, and
the key's rate limit, counted in the same budget as the API. Refusals are the API's JSON
errors. The URL may carry the caller's defaults: `?approver=alice@example.com` (repeatable),
asked when a call names nobody (a permission prompt never does), and `?wait=SECONDS`, how long
a call waits for the answer before it returns pending.

The MCP SDK serves the protocol, stateless: each POST stands alone, so any web process can
answer any request, as with the API. Its session manager runs a task group on the event loop
of the server; each loop (uvicorn runs one per process) gets its own, started with the first
request, and stopped by the ASGI lifespan's shutdown where the server sends one.
"""

import asyncio
import contextlib
import logging
import math
import threading
import weakref
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.http.request import split_domain_port, validate_host
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from rest_framework.exceptions import AuthenticationFailed

from broker.canonical import canonical_json
from decisions.addresses import parse_address
from decisions.mcp_tools import DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS, Caller, server
from organizations.auth import api_key_from_authorization, rate_limit_wait
from organizations.models import ApiKey, Scope

logger = logging.getLogger(__name__)

PATH = "/mcp"
MAX_DEFAULT_APPROVERS = 50


def is_mcp_path(path: str) -> bool:
    return path in (PATH, PATH + "/")


async def _json_error(
    send, status: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None
) -> None:
    body = canonical_json({"error": {"code": code, "message": message, "fields": fields or {}}}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, *, fields=None, headers=None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields, self.headers = fields, headers


def _header(scope, name: bytes) -> bytes:
    return next((value for key, value in scope["headers"] if key == name), b"")


def _check_host(scope) -> None:
    # Django checks Host for its own requests (DisallowedHost); this request never reaches it.
    domain, _ = split_domain_port(_header(scope, b"host").decode("latin-1"))
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        raise Refused(400, "bad_request", "Bad request.")


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="countersign"'}


@sync_to_async(thread_sensitive=False)
def _authenticate(authorization: bytes) -> ApiKey:
    """The API's checks, in the API's order: key, scope, rate limit."""
    try:
        key = api_key_from_authorization(authorization)
    except AuthenticationFailed as exc:
        raise Refused(401, "authentication_failed", str(exc.detail), headers=_CHALLENGE) from None
    except (OperationalError, InterfaceError):
        logger.warning("/mcp: database unavailable", exc_info=True)
        message = "The database is unavailable; retry shortly."
        raise Refused(503, "unavailable", message, headers={"Retry-After": "5"}) from None
    finally:
        connections.close_all()  # a pool thread: give the connection back
    if key is None:
        raise Refused(
            401, "not_authenticated", "Authentication credentials were not provided.", headers=_CHALLENGE
        )
    if not key.has_scope(Scope.DECISIONS):
        raise Refused(403, "permission_denied", f"This API key lacks the '{Scope.DECISIONS}' scope.")
    if (wait := rate_limit_wait(key)) is not None:
        seconds = max(1, math.ceil(wait))
        raise Refused(
            429,
            "rate_limited",
            f"Too many requests; retry in {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )
    return key


def _defaults(scope, key: ApiKey) -> Caller:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    if unknown := sorted(set(query) - {"approver", "wait"}):
        raise Refused(
            400,
            "invalid",
            "Unknown query parameter.",
            fields={name: ["Unknown parameter."] for name in unknown},
        )
    approvers = [a.strip() for value in query.get("approver", []) for a in value.split(",") if a.strip()]
    if len(approvers) > MAX_DEFAULT_APPROVERS:
        raise Refused(
            400, "invalid", "Too many approvers.", fields={"approver": [f"at most {MAX_DEFAULT_APPROVERS}"]}
        )
    for address in approvers:
        try:
            parse_address(address)
        except ValueError as exc:
            raise Refused(400, "invalid", str(exc), fields={"approver": [str(exc)]}) from None
    wait = DEFAULT_WAIT_SECONDS
    if "wait" in query:
        try:
            wait = float(query["wait"][-1])
            if not (math.isfinite(wait) and 0 <= wait <= MAX_WAIT_SECONDS):
                raise ValueError(wait)
        except ValueError:
            message = f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}."
            raise Refused(400, "invalid", message, fields={"wait": [f"0 to {MAX_WAIT_SECONDS:g}"]}) from None
    return Caller(key, approvers, wait)


class _Running:
    """One session manager, running on one event loop until stopped."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mcp-session-manager")

    async def _run(self) -> None:
        try:
            async with self.manager.run():
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:
            logger.exception("the MCP session manager stopped")
            self._error = exc
            self._ready.set()

    async def started(self) -> StreamableHTTPSessionManager:
        await self._ready.wait()
        if self._error is not None:
            raise RuntimeError("the MCP session manager failed to start") from self._error
        return self.manager

    async def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class McpEndpoint:
    """The ASGI app for /mcp."""

    def __init__(self) -> None:
        self._running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Running] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # tests serve several loops in threads of one process

    def _manager_for_this_loop(self) -> _Running:
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop not in self._running:
                # Each call makes a new session manager (the app around it is not needed:
                # routing, auth and the lifespan are ours).
                server.streamable_http_app(
                    stateless_http=True,
                    # The Host was checked against ALLOWED_HOSTS above, and a browser page that
                    # rebinds DNS has no API key to send.
                    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
                    max_request_body_size=settings.MAX_REQUEST_BODY_BYTES,
                )
                self._running[loop] = _Running(server.session_manager)
            return self._running[loop]

    async def __call__(self, scope, receive, send) -> None:
        try:
            _check_host(scope)
            key = await _authenticate(_header(scope, b"authorization"))
            caller = _defaults(scope, key)
        except Refused as refused:
            await _json_error(
                send, refused.status, refused.code, refused.message, refused.fields, refused.headers
            )
            return
        scope = {**scope, "state": {**scope.get("state", {}), "countersign": caller}}
        manager = await self._manager_for_this_loop().started()
        await manager.handle_request(scope, receive, send)

    async def shutdown(self) -> None:
        """Stop this loop's session manager, if it was started: in-flight tool calls end."""
        with self._lock:
            running = self._running.pop(asyncio.get_running_loop(), None)
        if running is not None:
            await running.stop()


endpoint = McpEndpoint()
