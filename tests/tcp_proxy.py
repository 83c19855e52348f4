"""A TCP proxy on 127.0.0.1 in front of a real server (PostgreSQL, in the tests), in threads of
the test process, that the test can take down and bring back:

    proxy = TcpProxy(5432)       # listening on proxy.port, forwarding to 127.0.0.1:5432
    proxy.down()                 # every open connection cut, new ones refused: a crash, a restart
    proxy.up()                   # listening again, on the same port

What goes through is not looked at: the client speaks to the real server.
"""

import contextlib
import socket
import threading

from tests.smtp_sink import free_port


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self.up()

    def up(self) -> None:
        assert self._listener is None, "already up"
        # SO_REUSEADDR (create_server sets it): the port may still have connections in TIME_WAIT.
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.settimeout(0.1)  # so that the accept loop notices down() promptly
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy", daemon=True).start()

    def down(self) -> None:
        """Refuse new connections (the port is closed: ECONNREFUSED) and cut the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            open_sockets, self._open = self._open, set()
        if listener is not None:
            listener.close()
        for sock in open_sockets:
            _close(sock)

    def close(self) -> None:
        self.down()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by down()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    # shutdown first: it wakes a thread blocked in recv() on this socket, close() alone may not.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
