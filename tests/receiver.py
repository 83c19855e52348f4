"""A real HTTP receiver for callback tests: a ThreadingHTTPServer on 127.0.0.1 in a daemon
thread that records every request and answers from a script.

    receiver.script(Reply(500), Reply(200, body=b"thanks"))   # answered in this order
    receiver.url("/hook")                                    # where to send callbacks

Test modules use the fixture with `from tests.receiver import receiver_fixture` (it is
named `receiver`).

Once the script runs out every request gets 200 "ok". Besides plain replies the script can
hold a request (Hang), redirect it (Redirect), answer with a huge body sent in chunks (Huge),
or close the connection without a word (Close): the ways real receivers misbehave.
"""

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


@dataclass(frozen=True)
class Hang:
    """Say nothing for this long (or until release() or the receiver stops), then answer 200."""

    seconds: float


@dataclass(frozen=True)
class Redirect:
    location: str
    status: int = 302


@dataclass(frozen=True)
class Huge:
    """200 with a Content-Length of `size` bytes, written chunk by chunk for as long as the
    client keeps reading."""

    size: int = 50 * 1024 * 1024
    chunk: int = 64 * 1024


@dataclass(frozen=True)
class Close:
    """Read the request, then close the connection without answering."""


Behaviour = Reply | Hang | Redirect | Huge | Close


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.time()


@dataclass
class Served:
    """What the receiver managed to send back for one request."""

    path: str
    behaviour: Behaviour
    bytes_sent: int = 0
    client_hung_up: bool = False
    done: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format, *args) -> None:
        pass  # keep test output clean

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        receiver = self.server.receiver
        receiver.requests.append(
            Received(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                at=time.time(),
            )
        )
        behaviour = receiver.next_behaviour()
        served = Served(path=self.path, behaviour=behaviour)
        receiver.served.append(served)
        try:
            self._answer(behaviour, served)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            served.client_hung_up = True
            self.close_connection = True
        finally:
            served.done = True

    def _answer(self, behaviour: Behaviour, served: Served) -> None:
        receiver = self.server.receiver
        if isinstance(behaviour, Close):
            self.close_connection = True
            return
        if isinstance(behaviour, Hang):
            # Wakes early when the test releases it or the receiver stops, so a hanging
            # request never outlives its test.
            receiver._release.wait(behaviour.seconds)
            behaviour = Reply(200, body=b"late")
        if isinstance(behaviour, Redirect):
            behaviour = Reply(behaviour.status, {"Location": behaviour.location}, b"")
        if isinstance(behaviour, Huge):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(behaviour.size))
            self.end_headers()
            block = b"x" * behaviour.chunk
            while served.bytes_sent < behaviour.size and not receiver._stopping.is_set():
                piece = block[: behaviour.size - served.bytes_sent]
                self.wfile.write(piece)
                served.bytes_sent += len(piece)
            return
        self.send_response(behaviour.status)
        for name, value in behaviour.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(behaviour.body)))
        self.end_headers()
        self.wfile.write(behaviour.body)
        served.bytes_sent = len(behaviour.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler must not hold up shutdown
    receiver: "Receiver"


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.served: list[Served] = []
        self._script: queue.SimpleQueue[Behaviour] = queue.SimpleQueue()
        self._release = threading.Event()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        # A short poll interval: stop() waits up to one interval for serve_forever to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = "/hook", *, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def script(self, *behaviours: Behaviour) -> None:
        """Answer the next requests with these, in order."""
        for behaviour in behaviours:
            self._script.put(behaviour)

    def next_behaviour(self) -> Behaviour:
        try:
            return self._script.get_nowait()
        except queue.Empty:
            return Reply()

    def release(self) -> None:
        """Let every hanging request answer now."""
        self._release.set()

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    def start(self) -> "Receiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(name="receiver")
def receiver_fixture():
    """A local HTTP receiver on a free port; stopped (and any hanging request let go) after."""
    running = Receiver().start()
    try:
        yield running
    finally:
        with contextlib.suppress(OSError):
            running.stop()
