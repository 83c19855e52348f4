"""The callback receiver, three ways to mount it: a WSGI app, an ASGI app, a Django view.

Each reads the raw body (the signature covers its exact bytes), hands it to the bridge, and
answers 200 when the thread was advanced (or the callback is not for a LangGraph thread),
401 when the signature does not verify (Countersign does not retry a 4xx), and 500 when the
resume failed, so Countersign delivers the callback again later, with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from countersign.langgraph.bridge import CallbackResult

if TYPE_CHECKING:
    from countersign.langgraph.bridge import InterruptBridge

logger = logging.getLogger("countersign.langgraph")

MAX_BODY_BYTES = 5 * 1024 * 1024  # a decision with 20 000 characters of context is ~100 KB
JSON = ("Content-Type", "application/json")


def _failure(exc: BaseException) -> CallbackResult:
    logger.exception("resuming the thread failed; Countersign will deliver the callback again", exc_info=exc)
    return CallbackResult(500, f"could not resume the thread: {type(exc).__name__}")


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Error",
}


def wsgi_app(bridge: InterruptBridge) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        result = _wsgi_result(bridge, environ)
        headers = [JSON, ("Content-Length", str(len(result.as_json())))]
        if result.status_code == 405:
            headers.append(("Allow", "POST"))
        start_response(f"{result.status_code} {_REASONS.get(result.status_code, '')}".strip(), headers)
        return [result.as_json()]

    return app


def _wsgi_result(bridge: InterruptBridge, environ: dict[str, Any]) -> CallbackResult:
    if environ.get("REQUEST_METHOD") != "POST":
        return CallbackResult(405, "POST only")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        return CallbackResult(413, "body too large")
    body = environ["wsgi.input"].read(length) if length else b""
    headers = {
        name[5:].replace("_", "-").lower(): value
        for name, value in environ.items()
        if name.startswith("HTTP_")
    }
    try:
        return bridge.handle_callback(body, headers)
    except Exception as exc:
        return _failure(exc)


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def asgi_app(bridge: InterruptBridge, *, in_thread: bool = False) -> Callable[..., Awaitable[None]]:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        result = await _asgi_result(bridge, scope, receive, in_thread=in_thread)
        body = result.as_json()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if result.status_code == 405:
            headers.append((b"allow", b"POST"))
        await send({"type": "http.response.start", "status": result.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _asgi_result(
    bridge: InterruptBridge, scope: dict[str, Any], receive: Receive, *, in_thread: bool
) -> CallbackResult:
    if scope.get("method") != "POST":
        return CallbackResult(405, "POST only")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return CallbackResult(400, "client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return CallbackResult(413, "body too large")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    try:
        if in_thread:
            return await asyncio.to_thread(bridge.handle_callback, body, headers)
        return await bridge.ahandle_callback(body, headers)
    except Exception as exc:
        return _failure(exc)


def django_view(bridge: InterruptBridge) -> Callable[..., Any]:
    """A plain (sync) Django view: `path("countersign/callback", bridge.django_view())`."""
    from django.http import HttpRequest, HttpResponse
    from django.views.decorators.csrf import csrf_exempt

    @csrf_exempt  # the Standard Webhooks signature is the credential; there is no session
    def countersign_callback(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            result = CallbackResult(405, "POST only")
        else:
            try:
                result = bridge.handle_callback(request.body, request.headers)
            except Exception as exc:
                result = _failure(exc)
        response = HttpResponse(result.as_json(), status=result.status_code, content_type="application/json")
        if result.status_code == 405:
            response["Allow"] = "POST"
        return response

    return countersign_callback
