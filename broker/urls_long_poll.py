"""The URLs of the long-poll handler (broker/asgi.py): GET /decisions/{id}?wait=N resolves to
the async view, which waits on the event loop; everything else as broker.urls (so reverse()
and the JSON error handlers are the same)."""

from django.urls import include, path

from broker.urls import handler400, handler403, handler404, handler500  # noqa: F401  (Django reads them here)
from decisions import apis

urlpatterns = [
    path("decisions/<decision_id:decision_id>", apis.decision_long_poll, name="decision-long-poll"),
    path("", include("broker.urls")),
]
