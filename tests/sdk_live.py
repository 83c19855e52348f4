"""What the SDK's live tests share: Acme's agent client, alice answering through her real
one-click link, the callback delivered by running the outbox attempt (as the worker would),
and a real local port for the agent's callback receiver.

A test module imports the fixtures by their function names, as with tests.receiver:
`from tests.sdk_live import agent_client_fixture, agent_receiver_fixture, …  # noqa: F401`.
"""

import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from countersign import Countersign

from decisions.links import TEXT_ANSWER, link_url
from decisions.models import ApprovalRequest
from notifications.models import Delivery
from notifications.services import delivery_attempt
from organizations.services import webhook_secret_current
from tests.conftest import ALICE


@pytest.fixture(name="service_reachable_from_the_agent")
def service_reachable_fixture(settings, live_server, monkeypatch):
    settings.PUBLIC_BASE_URL = live_server.url  # alice's links point at the live server
    settings.CALLBACK_ALLOW_PRIVATE = True  # the agent's receiver listens on 127.0.0.1
    # No worker consumes the outbox here: each test delivers the callback it needs itself.
    monkeypatch.setattr("notifications.services._publish", lambda delivery_ids: None)


@pytest.fixture(name="agent_client")
def agent_client_fixture(live_server, acme_key) -> Iterator[Countersign]:
    """Acme's agent, with its API key, talking HTTP to the live service."""
    with Countersign(live_server.url, acme_key[1]) as client:
        yield client


@pytest.fixture(name="webhook_secret")
def webhook_secret_fixture(acme) -> str:
    return webhook_secret_current(organization=acme).secret


# --- the agent's callback receiver: the SDK's WSGI app on a real port ----------------------


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


class Receiver:
    """A WSGI server on 127.0.0.1 whose app can be replaced, as a restarted agent would."""

    def __init__(self) -> None:
        self._server = make_server(
            "127.0.0.1", 0, self._not_ready, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}/countersign/callback"

    @staticmethod
    def _not_ready(environ, start_response):
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"the agent is restarting"]

    def serve(self, app) -> None:
        self._server.set_app(app)

    def start(self) -> "Receiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(name="agent_receiver")
def agent_receiver_fixture() -> Iterator[Receiver]:
    running = Receiver().start()
    try:
        yield running
    finally:
        running.stop()


# --- alice, and the outbox ----------------------------------------------------------------


def alice_clicks(decision_id: str, choice: str, **form: str) -> None:
    """What alice's email button does: the one-click link, then its confirm form."""
    request = ApprovalRequest.objects.get(decision_id=decision_id, address=ALICE)
    page = httpx.post(link_url(request, choice), data={"confirm": "yes", **form})
    assert page.status_code == 200, page.text


def alice_answers_in_words(decision_id: str, text: str) -> None:
    alice_clicks(decision_id, TEXT_ANSWER, text=text)


def deliver_callback(decision_id: str) -> Delivery:
    """One attempt at the decision's callback, as the worker would make it."""
    delivery = Delivery.objects.get(decision_id=decision_id, kind=Delivery.Kind.CALLBACK)
    delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery
