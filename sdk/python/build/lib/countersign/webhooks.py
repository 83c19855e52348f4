"""Callbacks: verify that a POST really comes from Countersign, then read the decision in it.

Countersign signs each callback per Standard Webhooks (webhook-id, webhook-timestamp,
webhook-signature) with the organization's `whsec_…` secret (`manage.py webhook_secret`).
Verification is done by the `standardwebhooks` reference library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as _LibraryError

from countersign.errors import WebhookVerificationError
from countersign.models import Decision, WebhookEvent, parse_time


def verify_webhook(
    body: bytes | str, headers: Mapping[str, str], secret: str | Sequence[str]
) -> WebhookEvent:
    """The verified event. `body` must be the raw bytes as received (not re-serialized JSON);
    `headers` any mapping (names in any case). `secret` may be several secrets, e.g. the old
    and the new one while rotating. Raises WebhookVerificationError when no secret's signature
    matches, the timestamp is more than 5 minutes off, or the body is not a decision event."""
    lowered = {name.lower(): value for name, value in headers.items()}
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise WebhookVerificationError("no webhook secret configured")
    last_error: Exception | None = None
    for candidate in secrets:
        try:
            Webhook(candidate).verify(text, lowered, json_parse=False)
            break
        # The library raises ValueError and binascii.Error (a ValueError) for malformed
        # headers, not only its own error: all of them mean "not verified".
        except (_LibraryError, ValueError) as exc:
            last_error = exc
    else:
        raise WebhookVerificationError(f"signature not verified: {last_error}") from None
    return _read_event(text, webhook_id=lowered["webhook-id"])


def _read_event(text: str, *, webhook_id: str) -> WebhookEvent:
    try:
        payload = json.loads(text)
        data = payload["data"]
        decision = Decision.from_json(data)
        timestamp: datetime | None = parse_time(payload.get("timestamp"))
        event_type = str(payload["type"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WebhookVerificationError(f"signed, but not a Countersign event: {exc!r}") from None
    return WebhookEvent(id=webhook_id, type=event_type, timestamp=timestamp, decision=decision, raw=payload)
