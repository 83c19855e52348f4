"""A fake Microsoft Teams, over real HTTP, in the test process: the Bot Framework's login
endpoint (client credentials), its OpenID metadata and signing keys (JWKS, with endorsements),
and the connector (conversations and activities) the bot posts cards to; plus the signed
`invoke` activities Teams itself sends to /teams/messages.

    fake_teams.activities()                     # cards and replies the bot posted, parsed
    fake_teams.updates()                        # cards the bot replaced (PUT), parsed
    fake_teams.fail("POST /activities", 403)    # the next such call answers HTTP 403
    fake_teams.sign(audience=APP_ID)            # a Bot Framework token for an inbound activity
    post_invoke(client, activity, token=…)      # what Teams sends when a card's button is pressed

Test modules use the fixture with `from tests.fake_teams import fake_teams_fixture` (it is named
`fake_teams`); it points the TEAMS_* settings at the fake for the whole test.
"""

import contextlib
import itertools
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.fake_server import FakeServer, LocalFake

APP_ID = "00000000-0000-4000-8000-00000000b07a"
TENANT_ID = "11111111-1111-4111-8111-111111111111"
ISSUER = "https://api.botframework.com"
MESSAGES_PATH = "/teams/messages"
TEAMS_KEY_ID = "fake-teams-key"  # endorsed for msteams
OTHER_KEY_ID = "fake-webchat-key"  # a Bot Framework key endorsed only for another channel

# RSA keys take a while to make: one set for the whole run. STRANGER_KEY is in no JWKS.
_KEYS = {
    TEAMS_KEY_ID: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    OTHER_KEY_ID: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}
STRANGER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_ENDORSEMENTS = {TEAMS_KEY_ID: ["msteams", "emulator"], OTHER_KEY_ID: ["webchat"]}


@dataclass(frozen=True)
class Call:
    """One request to the connector as the fake received it."""

    method: str  # "POST" or "PUT"
    path: str  # decoded, e.g. /v3/conversations/a:1…/activities
    body: dict
    authorization: str

    @property
    def card(self) -> dict:
        """The Adaptive Card the activity carries ({} for a plain message)."""
        for attachment in self.body.get("attachments") or []:
            if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive":
                return attachment["content"]
        return {}

    @property
    def conversation(self) -> str:
        return self.path.split("/")[3]


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        status, body = self.server.fake._answer(
            method, path, raw, self.headers.get("Content-Type", ""), self.headers.get("Authorization", "")
        )
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeTeams(LocalFake):
    handler = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.logins: list[dict] = []
        # Each fake its own secret: a bot token a process cached for an earlier fake (on a port
        # since reused) is then never mistaken for one of this fake's.
        self.app_password = f"test-bot-secret-{secrets.token_hex(8)}"
        self.conversations: dict[str, str] = {}  # person -> their 1:1 conversation id
        self._tokens: set[str] = set()
        self._failures: dict[str, deque[int]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    # --- for tests --------------------------------------------------------------------------

    def fail(self, what: str, status: int, *, times: int = 1) -> None:
        """The next `times` calls of `what` ("POST /activities", "PUT /activities",
        "POST /conversations", "POST /login") answer HTTP `status`."""
        with self._lock:
            self._failures[what].extend([status] * times)

    def activities(self) -> list[Call]:
        """Activities the bot posted (cards and replies), in order."""
        with self._lock:
            return [c for c in self.calls if c.method == "POST" and c.path.count("/activities")]

    def updates(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == "PUT"]

    def sign(
        self,
        *,
        audience: str = APP_ID,
        issuer: str = ISSUER,
        expires_in: int = 3600,
        key_id: str = TEAMS_KEY_ID,
        key=None,
        service_url: str = "",
    ) -> str:
        """A token as the Bot Framework signs the activities it sends a bot."""
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience,
            "iat": now - 10,
            "nbf": now - 10,
            "exp": now + expires_in,
            "serviceurl": service_url or self.connector_url,
        }
        return jwt.encode(claims, key or _KEYS[key_id], algorithm="RS256", headers={"kid": key_id})

    @property
    def connector_url(self) -> str:
        return f"{self.base_url}/connector"

    # --- the server's side ------------------------------------------------------------------

    def _answer(self, method: str, path: str, raw: bytes, content_type: str, authorization: str):
        if method == "GET" and path == "/openid":
            return 200, {
                "issuer": ISSUER,
                "jwks_uri": f"{self.base_url}/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        if method == "GET" and path == "/keys":
            keys = []
            for key_id, private in _KEYS.items():
                jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
                keys.append({**jwk, "kid": key_id, "use": "sig", "endorsements": _ENDORSEMENTS[key_id]})
            return 200, {"keys": keys}
        if method == "POST" and path == "/login":
            return self._login(dict(parse_qsl(raw.decode())))
        if path.startswith("/connector/v3/conversations"):
            body = json.loads(raw) if raw and "json" in content_type else {}
            return self._connector(method, unquote(path.removeprefix("/connector")), body, authorization)
        return 404, {"error": {"code": "NotFound", "message": path}}

    def _failure(self, what: str) -> int | None:
        with self._lock:
            return self._failures[what].popleft() if self._failures[what] else None

    def _login(self, form: dict):
        with self._lock:
            self.logins.append(form)
        if status := self._failure("POST /login"):
            return status, {"error": "invalid_client"}
        if (form.get("client_id"), form.get("client_secret"), form.get("grant_type")) != (
            APP_ID,
            self.app_password,
            "client_credentials",
        ) or form.get("scope") != "https://api.botframework.com/.default":
            return 401, {"error": "invalid_client"}
        token = f"bot-token-{secrets.token_hex(8)}"
        with self._lock:
            self._tokens.add(token)
        return 200, {"token_type": "Bearer", "expires_in": 3600, "access_token": token}

    def _connector(self, method: str, path: str, body: dict, authorization: str):
        with self._lock:
            self.calls.append(Call(method=method, path=path, body=body, authorization=authorization))
            authorized = authorization.removeprefix("Bearer ") in self._tokens
        if not authorized:
            return 401, {"error": {"code": "Unauthorized", "message": "bad bot token"}}
        parts = path.split("/")  # ["", "v3", "conversations", id, "activities", activity id]
        if method == "POST" and len(parts) == 3:
            if status := self._failure("POST /conversations"):
                return status, {"error": {"code": "Forbidden", "message": "the bot is not installed"}}
            person = body["members"][0]["id"]
            with self._lock:
                # Teams' 1:1 conversation ids are long: "a:" and some 130 characters.
                conversation = self.conversations.setdefault(person, f"a:1{secrets.token_urlsafe(100)}")
            return 201, {"id": conversation}
        what = f"{method} /activities"
        if status := self._failure(what):
            return status, {"error": {"code": "Failed", "message": what}}
        if method == "PUT":
            return 200, {"id": parts[5]}
        return 201, {"id": f"1700000000{next(self._numbers):06d}"}


@pytest.fixture(name="fake_teams")
def fake_teams_fixture(settings):
    """A fake Teams on a free port, with the app's TEAMS_* settings pointing at it for this test."""
    teams = FakeTeams().start()
    settings.TEAMS_APP_ID = APP_ID
    settings.TEAMS_APP_PASSWORD = teams.app_password
    settings.TEAMS_TENANT_ID = TENANT_ID
    settings.TEAMS_SERVICE_URL = teams.connector_url
    settings.TEAMS_LOGIN_URL = f"{teams.base_url}/login"
    settings.TEAMS_OPENID_METADATA_URL = f"{teams.base_url}/openid"
    settings.TEAMS_TOKEN_ISSUER = ISSUER
    try:
        yield teams
    finally:
        with contextlib.suppress(OSError):
            teams.stop()


# --- what Teams sends us ----------------------------------------------------------------------


def invoke(
    *, conversation: str, user_id: str, data: dict, verb: str = "cs.answer", name: str = "Alice", **extra
) -> dict:
    """An adaptiveCard/action invoke: `user_id` pressed a button (Action.Execute) on a card in
    `conversation`; `data` is the button's data merged with the card's inputs, as Teams sends it."""
    activity = {
        "type": "invoke",
        "name": "adaptiveCard/action",
        "id": f"f:{secrets.token_hex(8)}",
        "channelId": "msteams",
        "serviceUrl": "https://smba.trafficmanager.net/emea/",
        "from": {"id": user_id, "name": name, "aadObjectId": "0c5cfdbb-596f-4d39-b557-5d9516c94107"},
        "conversation": {"id": conversation, "conversationType": "personal", "tenantId": TENANT_ID},
        "recipient": {"id": f"28:{APP_ID}", "name": "Countersign"},
        "value": {"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"},
    }
    activity.update(extra)
    return activity


def post_invoke(client, activity, *, token: str | None = None, raw: bytes | None = None):
    """POST an activity to /teams/messages with `Authorization: Bearer <token>` (none if None)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    body = raw if raw is not None else json.dumps(activity).encode()
    return client.post(MESSAGES_PATH, data=body, content_type="application/json", headers=headers)
