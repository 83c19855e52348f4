"""What the fake outer services (Slack, Teams) share: a real HTTP server on a free loopback
port, served from a daemon thread, that hands each request to the fake it belongs to."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: "LocalFake"


class LocalFake:
    """Base of a fake service. Its request handler finds the fake as `self.server.fake`."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self._server = FakeServer(("127.0.0.1", 0), self.handler)
        self._server.fake = self
        # A short poll interval: stop() waits up to one interval for serve_forever to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
