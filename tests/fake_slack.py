"""A fake Slack, over real HTTP, in the test process: the Web API that slack-sdk's WebClient
calls (POST /api/<method>), the response_url that ephemeral replies go to, and the signed
requests Slack itself sends to /slack/interactions.

    fake_slack.users_by_email[ALICE] = "U0ALICE"      # for users.lookupByEmail
    fake_slack.fail("chat.postMessage", "channel_not_found")    # the next call fails so
    fake_slack.rate_limit("chat.postMessage", times=2)          # HTTP 429, Retry-After: 1
    fake_slack.calls_to("chat.update")                          # what the app sent, parsed
    fake_slack.response_url("click-1")                          # where ephemeral replies land

Test modules use the fixture with `from tests.fake_slack import fake_slack_fixture` (it is
named `fake_slack`); it also points SLACK_API_URL at the fake and sets a bot token and a
signing secret for the whole test.

slack-sdk sends JSON for chat.postMessage, chat.update and views.open, query parameters (GET)
for users.lookupByEmail and form data for others; the fake reads all three, and decodes
"blocks", "attachments" and "view" when they arrive as JSON strings.
"""

import contextlib
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.fake_server import FakeServer, LocalFake

BOT_TOKEN = "xoxb-test"
SIGNING_SECRET = "test-signing-secret"
INTERACTIONS_PATH = "/slack/interactions"
_JSON_ARGS = ("blocks", "attachments", "view")


@dataclass(frozen=True)
class Call:
    """One Web API call as the fake received it."""

    method: str  # e.g. "chat.postMessage"
    args: dict
    authorization: str  # the Authorization header, "" when absent

    @property
    def blocks(self) -> list[dict]:
        return self.args.get("blocks") or []

    def block_types(self) -> list[str]:
        return [block["type"] for block in self.blocks]


@dataclass(frozen=True)
class Reply:
    """Something posted to a response_url: an ephemeral reply to the person who clicked."""

    path: str
    body: dict

    @property
    def text(self) -> str:
        return str(self.body.get("text", ""))


@dataclass(frozen=True)
class _Failure:
    error: str
    status: int = 200
    retry_after: int | None = None


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        args = dict(parse_qsl(url.query))
        args.update(_parse_body(body, self.headers.get("Content-Type", "")))
        slack = self.server.fake
        if not url.path.startswith("/api/"):
            slack._record_reply(Reply(path=url.path, body=args))
            self._send(200, b"ok", content_type="text/plain")
            return
        method = url.path.removeprefix("/api/")
        authorization = self.headers.get("Authorization", "")
        if not authorization and args.get("token"):
            authorization = f"Bearer {args['token']}"  # form requests may carry the token inline
        slack._record_call(Call(method=method, args=args, authorization=authorization))
        status, headers, answer = slack._answer(method, args, authorization)
        self._send(status, json.dumps(answer).encode(), headers=headers)

    def _send(
        self, status: int, body: bytes, *, content_type: str = "application/json", headers=None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _parse_body(body: bytes, content_type: str) -> dict:
    if not body:
        return {}
    text = body.decode("utf-8")
    parsed = json.loads(text) if "json" in content_type else dict(parse_qsl(text, keep_blank_values=True))
    for name in _JSON_ARGS:
        if isinstance(parsed.get(name), str):
            with contextlib.suppress(ValueError):
                parsed[name] = json.loads(parsed[name])
    return parsed


class FakeSlack(LocalFake):
    handler = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.replies: list[Reply] = []
        self.users_by_email: dict[str, str] = {}
        # Slack answers a post to "#name" with the channel's id.
        self.channels: dict[str, str] = {"#ops": "C0OPS"}
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    # --- for tests --------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str = "click") -> str:
        return f"http://127.0.0.1:{self.port}/actions/{name}"

    def fail(self, method: str, error: str = "channel_not_found", *, times: int = 1) -> None:
        """The next `times` calls of `method` answer {"ok": false, "error": error}."""
        with self._lock:
            self._failures[method].extend(_Failure(error) for _ in range(times))

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """The next `times` calls of `method` answer HTTP 429 with Retry-After."""
        with self._lock:
            self._failures[method].extend(
                _Failure("ratelimited", status=429, retry_after=retry_after) for _ in range(times)
            )

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def replies_to(self, name: str) -> list[Reply]:
        with self._lock:
            return [reply for reply in self.replies if reply.path == f"/actions/{name}"]

    # --- the server's side ------------------------------------------------------------------

    def _record_call(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _record_reply(self, reply: Reply) -> None:
        with self._lock:
            self.replies.append(reply)

    def _answer(self, method: str, args: dict, authorization: str) -> tuple[int, dict, dict]:
        with self._lock:
            failure = self._failures[method].popleft() if self._failures[method] else None
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            return failure.status, headers, {"ok": False, "error": failure.error}
        if not authorization.startswith("Bearer xox"):
            return 200, {}, {"ok": False, "error": "not_authed"}
        handler = {
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "users.lookupByEmail": self._lookup_by_email,
            "views.open": self._open_view,
        }.get(method)
        if handler is None:
            return 200, {}, {"ok": False, "error": "unknown_method"}
        return 200, {}, handler(args)

    def _post_message(self, args: dict) -> dict:
        target = str(args.get("channel", ""))
        if target.startswith(("U", "W")):
            channel = f"D{target}"  # a user id opens (or finds) the DM with them
        elif target.startswith("#"):
            if target not in self.channels:
                return {"ok": False, "error": "channel_not_found"}
            channel = self.channels[target]
        else:
            channel = target
        number = next(self._numbers)
        ts = f"{1700000000 + number}.{number:06d}"
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text", "")}}

    def _update(self, args: dict) -> dict:
        return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts"), "text": args.get("text")}

    def _lookup_by_email(self, args: dict) -> dict:
        user_id = self.users_by_email.get(str(args.get("email", "")))
        if user_id is None:
            return {"ok": False, "error": "users_not_found"}
        return {"ok": True, "user": {"id": user_id, "name": user_id.lower()}}

    def _open_view(self, args: dict) -> dict:
        view = args.get("view") if isinstance(args.get("view"), dict) else {}
        return {"ok": True, "view": {"id": f"V{next(self._numbers):08d}", **view}}


@pytest.fixture(name="fake_slack")
def fake_slack_fixture(settings):
    """A fake Slack on a free port, with the app's settings pointing at it for this test."""
    slack = FakeSlack().start()
    settings.SLACK_API_URL = slack.api_url
    settings.SLACK_BOT_TOKEN = BOT_TOKEN
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    try:
        yield slack
    finally:
        with contextlib.suppress(OSError):
            slack.stop()


# --- what Slack sends us ----------------------------------------------------------------------


def slack_signature(body: str, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    """Slack's v0 signature: hex HMAC-SHA256 of "v0:<timestamp>:<body>" with the signing secret."""
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


def form_body(payload) -> str:
    """An interaction as Slack posts it: a form with one field, `payload`, holding JSON."""
    return urlencode({"payload": json.dumps(payload)})


def post_signed(client, body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None):
    """POST `body` to /slack/interactions signed as Slack would sign it (now, unless told)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return client.post(
        INTERACTIONS_PATH,
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": slack_signature(body, stamp, secret),
        },
    )
