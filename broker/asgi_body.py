"""Request bodies under ASGI: read before Django sees the request, chunked or not, up to a limit.

Django's ASGI handler reads a body whole into a temporary file before any middleware runs, with
no limit, and sets CONTENT_LENGTH only from the header. A chunked body (Transfer-Encoding:
chunked, no Content-Length) therefore reached the API with no CONTENT_LENGTH, and DRF, which
reads a body only as long as CONTENT_LENGTH says, parsed it as empty: valid JSON was answered
"action: This field is required", and a chunked body of any size was taken in whole.
"""

from django.conf import settings

_FRAMING = {b"content-length", b"transfer-encoding"}


def _declared_length(headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            # uvicorn refuses a malformed Content-Length before the application is called.
            return int(value)
    return None


class BoundedBody:
    """ASGI middleware in front of Django. It reads each HTTP request's body up to
    MAX_REQUEST_BODY_BYTES + 1 bytes and hands it on in one piece; a chunked body goes on with
    a Content-Length stating its size (as a reverse proxy that buffers bodies does), so that
    everything behind reads it.

    Past the limit it stops reading: Django gets the first limit + 1 bytes, and the Content-Length
    says as much, so BodySizeLimitMiddleware refuses it with a 413 in the shape its path calls
    for (JSON, or a page for approvers). A declared Content-Length over the limit is refused
    the same way without reading any of the body."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = settings.MAX_REQUEST_BODY_BYTES
        declared = _declared_length(scope["headers"])
        body = bytearray()
        if declared is None or declared <= limit:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client is gone: nobody to answer
                body += message.get("body", b"")
                if len(body) > limit or not message.get("more_body", False):
                    break
            del body[limit + 1 :]
        if declared is None:
            headers = [(name, value) for name, value in scope["headers"] if name not in _FRAMING]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}

        handed_on = False

        async def bounded_receive():
            nonlocal handed_on
            if not handed_on:
                handed_on = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            # After the body, Django only listens for the client going away. What is left of a
            # body cut short (or never read) is dropped meanwhile.
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return message

        return await self.app(scope, bounded_receive, send)
