"""The web app: Django for everything, except /mcp, which the MCP SDK serves (broker/mcp_http.py).

Requests for Django go to Django's own ASGI handler untouched, so the long-poll works as it
always has. The lifespan, which Django does not speak, is answered here: its shutdown stops
the MCP session manager.
"""

import os

from django.core.asgi import get_asgi_application

from broker import tracing
from broker.asgi_body import BoundedBody

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
# Before Django builds its middleware chain: tracing adds a middleware of its own.
tracing.start_from_environment()

# Request bodies are read, chunked or not and at most 1 MiB, before Django sees the request.
django_application = BoundedBody(get_asgi_application())

from broker.mcp_http import endpoint as mcp_endpoint  # noqa: E402  (needs Django set up)
from broker.mcp_http import is_mcp_path  # noqa: E402


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await mcp_endpoint.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send) -> None:
    if scope["type"] == "http" and is_mcp_path(scope["path"]):
        await mcp_endpoint(scope, receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)
    else:
        await django_application(scope, receive, send)
