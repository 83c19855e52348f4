"""A small client for the Bot Framework connector: the bot's token (client credentials), a 1:1
conversation with a person, and posting, replying to and replacing activities.

Failures are sorted for the outbox: a refused credential, an unknown conversation or a bot
not installed for the person cannot be cured by retrying (PermanentFailure); a timeout, a 429
or a 5xx can (RetryLater, with the connector's Retry-After when it gives one).
"""

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from channels.base import AttemptReport, PermanentFailure, RetryLater
from channels.teams.conf import CONNECTOR_SCOPE, teams_setting
from channels.teams.models import TeamsSettings

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class BotCredentials:
    app_id: str
    app_password: str
    tenant_id: str
    service_url: str


def credentials_for(organization_id: int) -> BotCredentials:
    """The organization's bot, its empty fields filled from the TEAMS_* settings."""
    config = TeamsSettings.objects.filter(organization_id=organization_id).first()
    password_env = config.app_password_env if config else ""
    return BotCredentials(
        app_id=(config.app_id if config and config.app_id else teams_setting("TEAMS_APP_ID")),
        app_password=os.environ.get(password_env, "")
        if password_env
        else teams_setting("TEAMS_APP_PASSWORD"),
        tenant_id=(config.tenant_id if config and config.tenant_id else teams_setting("TEAMS_TENANT_ID")),
        service_url=(
            config.service_url if config and config.service_url else teams_setting("TEAMS_SERVICE_URL")
        ),
    )


def known_app_ids() -> set[str]:
    """Every bot an inbound token may be addressed to: the default one and each organization's."""
    ids = set(TeamsSettings.objects.exclude(app_id="").values_list("app_id", flat=True))
    ids.add(teams_setting("TEAMS_APP_ID"))
    return {app_id for app_id in ids if app_id}


# Bot tokens live about an hour; each process keeps its own, in memory (not in the shared cache:
# it is a credential), and fetches a new one a few minutes before it runs out.
_tokens: dict[str, tuple[str, float]] = {}
_tokens_lock = threading.Lock()
_EARLY = 300


def _report(response: httpx.Response) -> AttemptReport:
    return AttemptReport(status_code=response.status_code, response_snippet=response.text[:2000])


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


class Connector:
    def __init__(self, credentials: BotCredentials) -> None:
        if not credentials.app_id or not credentials.app_password:
            raise PermanentFailure("Teams is not configured for this organization (no app id or secret)")
        self.credentials = credentials
        self.service_url = credentials.service_url.rstrip("/")
        self._login_url = teams_setting("TEAMS_LOGIN_URL")
        self._token_key = hashlib.sha256(
            f"{self._login_url}\n{credentials.app_id}\n{credentials.app_password}".encode()
        ).hexdigest()

    # --- the bot's token ----------------------------------------------------------------------

    def _token(self) -> str:
        with _tokens_lock:
            cached = _tokens.get(self._token_key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        try:
            response = httpx.post(
                self._login_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.credentials.app_id,
                    "client_secret": self.credentials.app_password,
                    "scope": CONNECTOR_SCOPE,
                },
                timeout=TIMEOUT,
            )
        except httpx.HTTPError as exc:
            raise RetryLater(f"Teams login: {type(exc).__name__}: {exc}") from None
        if response.status_code in (400, 401, 403):
            raise PermanentFailure(
                "Teams login: the bot's app id or secret was refused", report=_report(response)
            )
        if response.status_code != 200:
            raise RetryLater(
                f"Teams login: HTTP {response.status_code}",
                retry_after=_retry_after(response),
                report=_report(response),
            )
        try:
            body = response.json()
            token, lifetime = str(body["access_token"]), float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise RetryLater("Teams login: an answer without a token", report=_report(response)) from None
        with _tokens_lock:
            _tokens[self._token_key] = (token, time.monotonic() + max(lifetime - _EARLY, 30))
        return token

    def _forget_token(self) -> None:
        with _tokens_lock:
            _tokens.pop(self._token_key, None)

    # --- the connector ------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict) -> dict:
        url = f"{self.service_url}{path}"
        try:
            response = httpx.request(
                method, url, json=body, headers={"Authorization": f"Bearer {self._token()}"}, timeout=TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise RetryLater(f"Teams: {type(exc).__name__}: {exc}") from None
        if response.status_code in (200, 201, 202):
            try:
                answer = response.json() if response.content else {}
            except ValueError:
                answer = {}
            return answer if isinstance(answer, dict) else {}
        if response.status_code == 401:
            self._forget_token()  # revoked or expired early: the next attempt logs in again
            raise RetryLater("Teams: HTTP 401, the bot's token was refused", report=_report(response))
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryLater(
                f"Teams: HTTP {response.status_code}",
                retry_after=_retry_after(response),
                report=_report(response),
            )
        # 400, 403 (the bot is not in that chat or team), 404 (no such conversation or activity)
        raise PermanentFailure(f"Teams: HTTP {response.status_code}", report=_report(response))

    def create_personal_conversation(self, user_id: str) -> str:
        """The 1:1 chat between the bot and this person (Teams returns the existing one)."""
        answer = self._call(
            "POST",
            "/v3/conversations",
            {
                "bot": {"id": f"28:{self.credentials.app_id}"},
                "members": [{"id": user_id}],
                "channelData": {"tenant": {"id": self.credentials.tenant_id}},
                "isGroup": False,
                "tenantId": self.credentials.tenant_id,
            },
        )
        if not isinstance(answer.get("id"), str) or not answer["id"]:
            raise RetryLater("Teams: the new conversation came back without an id")
        return answer["id"]

    def send(self, conversation_id: str, activity: dict, *, reply_to: str = "") -> str:
        """Post an activity (a reply in the thread of `reply_to`, if given); its id."""
        path = f"/v3/conversations/{quote(conversation_id, safe='')}/activities"
        if reply_to:
            path += f"/{quote(reply_to, safe='')}"
        answer = self._call("POST", path, activity)
        return str(answer.get("id") or "")

    def update(self, conversation_id: str, activity_id: str, activity: dict) -> None:
        """Replace a posted activity (the card) with this one."""
        path = f"/v3/conversations/{quote(conversation_id, safe='')}/activities/{quote(activity_id, safe='')}"
        self._call("PUT", path, {**activity, "id": activity_id})


def card_activity(card: dict, *, summary: str) -> dict:
    """A message activity carrying one Adaptive Card; `summary` is what notifications show."""
    return {
        "type": "message",
        "summary": summary[:280],
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
    }
