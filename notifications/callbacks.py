"""Callbacks: a prepared body POSTed to a URL, signed per Standard Webhooks (what the body
says is its sender's business: decisions.outbox builds the decision.resolved event).

webhook-id belongs to the delivery, so it is the same on every retry and receivers can
deduplicate; webhook-timestamp and webhook-signature are fresh on each attempt, signed with
every current secret of the organization (two during a rotation). The request goes to the
address the SSRF check approved (see ssrf.pinned_target), follows no redirect, gives up
after 15 s, and reads at most 2 KB of whatever comes back.
"""

import email.utils
import ssl
from datetime import UTC, datetime

import certifi
import httpx
from django.conf import settings
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from notifications.models import Delivery
from notifications.senders import AttemptReport, PermanentFailure, RetryLater
from notifications.ssrf import RefusedAddress, UnresolvableHost, pinned_target
from organizations.services import webhook_signing_secrets

TIMEOUT = httpx.Timeout(15.0)
SNIPPET_BYTES = 2048
MAX_RETRY_AFTER = 24 * 3600
USER_AGENT = "Countersign-Webhooks/1.0"
# Building a TLS context costs ~30 ms; share it. Not the client: its pool is keyed by the
# pinned IP, so one TLS connection could serve two host names behind the same address.
_TLS = ssl.create_default_context(cafile=certifi.where())


def webhook_id(delivery: Delivery) -> str:
    return f"msg_{delivery.decision_id.removeprefix('dec_')}_{delivery.pk}"


def signature_header(*, msg_id: str, at: datetime, body: str, secrets: list[str]) -> str:
    return " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date, kept between 1 s and a day."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (email.utils.parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 1.0), MAX_RETRY_AFTER)


def _read_snippet(response: httpx.Response) -> str:
    """At most SNIPPET_BYTES of the body: a receiver answering 50 MB costs us 2 KB."""
    collected = b""
    for chunk in response.iter_raw():
        collected += chunk
        if len(collected) >= SNIPPET_BYTES:
            break
    return collected[:SNIPPET_BYTES].decode("utf-8", errors="replace")


def _judge(response: httpx.Response, report: AttemptReport) -> AttemptReport:
    status = response.status_code
    if 200 <= status < 300:
        return report
    if status == 429:
        retry_after = _retry_after_seconds(response.headers.get("retry-after"))
        raise RetryLater("receiver answered 429 Too Many Requests", retry_after=retry_after, report=report)
    if status == 408 or status >= 500:
        raise RetryLater(f"receiver answered {status}", report=report)
    if 300 <= status < 400:
        location = response.headers.get("location", "")[:200]
        raise PermanentFailure(
            f"receiver answered {status}; redirect to {location!r} not followed", report=report
        )
    # 410 Gone and every other 4xx: the receiver refuses this message, a retry would too.
    raise PermanentFailure(f"receiver answered {status}", report=report)


def post_signed(delivery: Delivery, *, url: str, body: str) -> AttemptReport:
    """POST `body` to `url` for this delivery, signed with its organization's secrets. Raises
    PermanentFailure or RetryLater as the outbox expects of a sender."""
    try:
        target = pinned_target(url, allow_private=settings.CALLBACK_ALLOW_PRIVATE)
    except RefusedAddress as exc:
        raise PermanentFailure(str(exc)) from None
    except UnresolvableHost as exc:
        raise RetryLater(str(exc)) from None
    except ValueError as exc:
        raise PermanentFailure(f"invalid callback URL: {exc}") from None

    msg_id, now = webhook_id(delivery), timezone.now()
    secrets = webhook_signing_secrets(organization=delivery.organization)
    headers = {
        "host": target.host_header,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature_header(msg_id=msg_id, at=now, body=body, secrets=secrets),
    }
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    try:
        # trust_env=False: an HTTP(S)_PROXY from the environment would undo the address pinning.
        with httpx.Client(verify=_TLS, timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                "POST", target.url, content=body.encode(), headers=headers, extensions=extensions
            )
            response = client.send(request, stream=True)
            try:
                report = AttemptReport(
                    status_code=response.status_code, response_snippet=_read_snippet(response)
                )
            finally:
                response.close()
    except httpx.HTTPError as exc:
        raise RetryLater(f"{type(exc).__name__}: {exc}") from None
    return _judge(response, report)
