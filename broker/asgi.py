"""The web app: one ASGI application, three ways in.

- /mcp: the MCP SDK (broker/mcp_http.py).
- GET /decisions/{id}?wait=N, the long-poll: Django's ASGI handler, so that a waiting request
  is a future on the event loop, never a thread (decisions/apis.py decision_long_poll).
- Everything else, the JSON API and the approvers' pages: Django's WSGI handler, in a pool of
  threads, one thread hop per request. Under the ASGI handler every MiddlewareMixin middleware
  (security, sessions, CSRF, auth, messages, …) and the sync view each cost a hop of their own,
  in a new thread per request: about twice the web CPU of a create (issue 14).

In front of both Djangos: static files (broker/static_files.py), and request bodies read whole,
chunked or not and at most 1 MiB (broker/asgi_body.py). The lifespan, which Django does not
speak, is answered here: its shutdown stops the MCP session manager.
"""

import os
import re
from urllib.parse import parse_qsl

from a2wsgi import WSGIMiddleware
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.wsgi import get_wsgi_application

from broker import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
# Before Django builds its middleware chain: tracing adds a middleware of its own.
tracing.start_from_environment()

# get_wsgi_application() sets Django up; WEB_THREADS threads, 10 as DATABASE_POOL_SIZE by default.
# (Django's stubs type a WSGI response as HttpResponseBase; it is the iterable of bytes WSGI wants.)
_sync_django = WSGIMiddleware(get_wsgi_application(), workers=settings.WEB_THREADS)  # type: ignore[arg-type]

from broker.asgi_body import BoundedBody  # noqa: E402  (needs Django set up)
from broker.mcp_http import endpoint as mcp_endpoint  # noqa: E402
from broker.mcp_http import is_mcp_path  # noqa: E402
from broker.static_files import StaticFilesASGI  # noqa: E402
from decisions.urls import DecisionIdConverter  # noqa: E402


class LongPollHandler(ASGIHandler):
    """Django's ASGI handler, resolving with broker/urls_long_poll.py: /decisions/{id} is the
    async long-poll view there (the sync handler's URLs have the sync view)."""

    def create_request(self, scope, body_file):
        request, error_response = super().create_request(scope, body_file)
        if request is not None:
            request.urlconf = "broker.urls_long_poll"
        return request, error_response


_DECISION_PATH = re.compile(rf"/decisions/{DecisionIdConverter.regex}")


def is_long_poll(scope) -> bool:
    """GET /decisions/{id} with a `wait` parameter (valid or not: the view answers a bad one)."""
    return (
        scope["method"] == "GET"
        and _DECISION_PATH.fullmatch(scope["path"]) is not None
        and any(name == "wait" for name, _ in parse_qsl(scope["query_string"].decode("latin-1"), True))
    )


_long_poll = BoundedBody(LongPollHandler())
_everything_else = BoundedBody(_sync_django)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await mcp_endpoint.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _route(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] != "http":
        await _long_poll(scope, receive, send)  # websockets: Django refuses them
    elif is_mcp_path(scope["path"]):
        await mcp_endpoint(scope, receive, send)
    elif is_long_poll(scope):
        await _long_poll(scope, receive, send)
    else:
        await _everything_else(scope, receive, send)


application = StaticFilesASGI(_route)
