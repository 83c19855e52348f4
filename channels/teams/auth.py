"""Is this activity from the Bot Framework? Its `Authorization: Bearer` JWT must be signed by a
key from the Bot Framework's OpenID metadata (`jwks_uri`), issued by the Bot Framework
(TEAMS_TOKEN_ISSUER), addressed to one of our bots (audience = its app id), unexpired, and
signed with a key endorsed for the activity's channel ("msteams"): a key the Bot Framework
uses for another channel must not speak for Teams.
"""

import logging
import threading
import time

import httpx
import jwt

from channels.teams.conf import teams_setting

logger = logging.getLogger(__name__)

ALGORITHMS = ["RS256"]
CLOCK_SKEW_SECONDS = 300  # as the Bot Framework SDKs allow
METADATA_LIFETIME_SECONDS = 24 * 3600  # the keys roll over slowly; PyJWKClient refetches on an unknown kid


class InvalidToken(Exception):
    """The token is missing, forged, expired, or not for us; the message says which (for logs)."""


class _EndorsedKeys(jwt.PyJWKClient):
    """PyJWKClient that also keeps each key's `endorsements`: the channels it may sign for."""

    endorsements: dict[str, list[str]]

    def fetch_data(self):
        data = super().fetch_data()
        keys = data.get("keys", []) if isinstance(data, dict) else []
        self.endorsements = {
            str(key.get("kid")): [str(e) for e in key.get("endorsements") or [] if isinstance(e, str)]
            for key in keys
            if isinstance(key, dict)
        }
        return data


_clients: dict[str, tuple[_EndorsedKeys, float]] = {}
_clients_lock = threading.Lock()


def _keys() -> _EndorsedKeys:
    """The key client for the configured metadata, refreshed from the metadata once a day."""
    metadata_url = teams_setting("TEAMS_OPENID_METADATA_URL")
    with _clients_lock:
        cached = _clients.get(metadata_url)
    if cached and cached[1] > time.monotonic():
        return cached[0]
    try:
        response = httpx.get(metadata_url, timeout=5)
        response.raise_for_status()
        jwks_uri = response.json()["jwks_uri"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise InvalidToken(f"the OpenID metadata could not be read: {exc}") from None
    if not isinstance(jwks_uri, str):
        raise InvalidToken("the OpenID metadata names no jwks_uri")
    client = _EndorsedKeys(jwks_uri, cache_keys=False, lifespan=METADATA_LIFETIME_SECONDS, timeout=5)
    client.endorsements = {}
    with _clients_lock:
        _clients[metadata_url] = (client, time.monotonic() + METADATA_LIFETIME_SECONDS)
    return client


def verify_token(authorization: str, *, audiences: set[str]) -> tuple[dict, str]:
    """(claims, key id) of a valid Bot Framework token addressed to one of `audiences`.
    Raises InvalidToken. The channel's endorsement is checked by `check_endorsed` once the
    activity (which names the channel) has been read."""
    scheme, _, token = authorization.partition(" ")
    if scheme != "Bearer" or not token:
        raise InvalidToken("no Bearer token")
    if not audiences:
        raise InvalidToken("no Teams bot is configured")
    keys = _keys()
    try:
        signing_key = keys.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=ALGORITHMS,
            audience=sorted(audiences),
            issuer=teams_setting("TEAMS_TOKEN_ISSUER"),
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "iss", "aud"]},
        )
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidToken(f"{type(exc).__name__}: {exc}") from None
    return claims, str(signing_key.key_id)


def check_endorsed(key_id: str, channel_id: str) -> None:
    """Raises InvalidToken unless the key that signed the token is endorsed for this channel."""
    if not channel_id or channel_id not in _keys().endorsements.get(key_id, []):
        raise InvalidToken(f"the signing key is not endorsed for channel {channel_id[:40]!r}")
