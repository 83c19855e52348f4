"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 in a thread of the test process, which
records every message it is handed.

    EMAIL_URL=f"smtp://127.0.0.1:{smtp_sink.port}"   # for a worker process
    smtp_sink.to("alice@example.com")                 # the messages alice would find
    smtp_sink.hold(30)                                # answer the next message 30 s late

Test modules use the fixture with `from tests.smtp_sink import smtp_sink_fixture` (it is named
`smtp_sink`).

A message is recorded as soon as its DATA has arrived, before the server answers: hold()
delays that answer, so a sender killed meanwhile has handed over a message it never heard was
accepted, and will send it again: what a real mailbox would then hold twice.
"""

import asyncio
import contextlib
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

# aiosmtpd narrates every SMTP command at INFO; the messages are what the tests look at.
logging.getLogger("mail.log").setLevel(logging.WARNING)


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    at: float  # time.time()

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def header(self, name: str) -> str:
        return str(self.message[name] or "")


class _Handler:
    def __init__(self, sink: "SmtpSink") -> None:
        self.sink = sink

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        with self.sink._lock:
            self.sink.mails.append(
                Mail(
                    sender=envelope.mail_from,
                    recipients=list(envelope.rcpt_tos),
                    message=message_from_bytes(raw, policy=policy.default),
                    at=time.time(),
                )
            )
        if seconds := self.sink._next_hold():
            await asyncio.sleep(seconds)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpSink:
    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self._holds: queue.SimpleQueue[float] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        """The EMAIL_URL that sends to this sink."""
        return f"smtp://127.0.0.1:{self.port}"

    def hold(self, *seconds: float) -> None:
        """Answer the next messages this many seconds late, in order; later ones at once."""
        for each in seconds:
            self._holds.put(each)

    def _next_hold(self) -> float:
        try:
            return self._holds.get_nowait()
        except queue.Empty:
            return 0.0

    def to(self, address: str) -> list[Mail]:
        """Every message handed over for this recipient, in arrival order."""
        with self._lock:
            return [mail for mail in self.mails if address in mail.recipients]

    def count_by_recipient(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for mail in self.mails:
                for address in mail.recipients:
                    counts[address] = counts.get(address, 0) + 1
        return counts

    def start(self) -> "SmtpSink":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture(name="smtp_sink")
def smtp_sink_fixture():
    """An SMTP server on a free port of 127.0.0.1; stopped after the test."""
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        with contextlib.suppress(Exception):
            sink.stop()
