"""Slack's messages: the approval blocks, the outcome blocks, the Web API client and how its
errors sort into give-up and try-again.

Credentials come from the organization's SlackSettings (names of environment variables) or
SLACK_BOT_TOKEN / SLACK_SIGNING_SECRET; SLACK_API_URL points the client elsewhere (a local
fake Slack in tests).
"""

import os
import re
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from channels.base import AttemptReport, PermanentFailure, RetryLater
from channels.slack.models import SlackSettings
from decisions.display import deadline_phrase, detail_rows, option_label
from decisions.links import portal_url, request_token
from decisions.models import ApprovalRequest, Decision, ResponseType, Verification

# Errors that no retry can cure: the notification fails, with Slack's reason on record.
PERMANENT_ERRORS = {
    "account_inactive",
    "channel_not_found",
    "invalid_auth",
    "is_archived",
    "msg_too_long",
    "no_permission",
    "not_authed",
    "not_in_channel",
    "restricted_action",
    "token_revoked",
    "user_not_found",
    "users_not_found",
    "cant_update_message",
    "message_not_found",
    "invalid_blocks",
}
NOTE_ACTION = "cs_note"
PORTAL_ACTION = "cs_open_portal"  # a URL button: Slack opens the portal and tells us of the click
CHOICE_ACTION_PREFIX = "cs_choice_"
MODAL_CALLBACK = "cs_answer_modal"


@dataclass(frozen=True)
class SlackCredentials:
    token: str
    signing_secret: str


def credentials_for(organization_id: int) -> SlackCredentials:
    config = SlackSettings.objects.filter(organization_id=organization_id).first()
    token_env = config.bot_token_env if config and config.bot_token_env else ""
    secret_env = config.signing_secret_env if config and config.signing_secret_env else ""
    return SlackCredentials(
        token=os.environ.get(token_env, "") if token_env else settings.SLACK_BOT_TOKEN,
        signing_secret=os.environ.get(secret_env, "") if secret_env else settings.SLACK_SIGNING_SECRET,
    )


def client_for(organization_id: int) -> WebClient:
    token = credentials_for(organization_id).token
    if not token:
        raise PermanentFailure("Slack is not configured for this organization (no bot token)")
    return WebClient(
        token=token,
        base_url=settings.SLACK_API_URL,
        timeout=10,
        # slack-sdk's own handlers: one wait-and-retry on 429 (Retry-After) and on a dropped
        # connection; anything longer goes back to the outbox's backoff.
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=1),
            ConnectionErrorRetryHandler(max_retry_count=1),
        ],
    )


# Where Slack's response_urls point. An interaction's response_url is input like any other: only
# Slack's own origins are fetched, this one and that of the Web API (SLACK_API_URL: a fake in tests).
SLACK_HOOKS_ORIGIN = ("https", "hooks.slack.com", 443)


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return None
    if port is None or not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return None
    return parts.scheme, parts.hostname, port


def is_slack_url(url: str) -> bool:
    """Is this URL on Slack's own hosts (hooks.slack.com, or the configured Web API's)?"""
    origin = _origin(url)
    return origin is not None and origin in {SLACK_HOOKS_ORIGIN, _origin(settings.SLACK_API_URL)}


def escape(text: str, limit: int | None = None) -> str:
    """Text we did not write (the agent's action, context, details and options; an approver's
    answer; names), made safe for any Slack text field: Slack reads &, < and > as markup in
    mrkdwn, plain_text and a message's fallback `text` alike, so `<!channel>` would notify a
    whole channel and `<https://evil|Approve>` would be a link. Escaped, they show as typed.
    `limit` cuts the escaped text to that many characters without splitting an entity."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if limit is None or len(escaped) <= limit:
        return escaped
    cut = escaped[:limit]
    if (amp := cut.rfind("&")) != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut


_SLACK_USER = re.compile(r"^slack:([UW][A-Z0-9]+)$")


def _person(address: str) -> str:
    return f"<@{match.group(1)}>" if (match := _SLACK_USER.match(address)) else escape(address)


def _summary_blocks(decision: Decision) -> list[dict]:
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": escape(decision.action, 150)}}
    ]
    if decision.context:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": escape(decision.context, 2900)}})
    if rows := detail_rows(decision.details):
        fields = [
            {"type": "mrkdwn", "text": f"*{escape(label, 200)}*\n{escape(value, 1500)}"}
            for label, value in rows[:10]
        ]
        blocks.append({"type": "section", "fields": fields})
    return blocks


def approval_blocks(decision: Decision, request: ApprovalRequest) -> list[dict]:
    token = request_token(request)
    if decision.verification != Verification.LINK:
        # Answered only in the portal (signed in, maybe with a passkey): the button opens it.
        buttons = [
            {
                "type": "button",
                "action_id": PORTAL_ACTION,
                "text": {"type": "plain_text", "text": "Open in Countersign"},
                "url": portal_url(decision.id),
                "style": "primary",
            }
        ]
    elif decision.response_type == ResponseType.TEXT:
        buttons = [
            {
                "type": "button",
                "action_id": NOTE_ACTION,
                "text": {"type": "plain_text", "text": "Answer…"},
                "value": token,
            }
        ]
    else:
        buttons = []
        for index, option in enumerate(decision.options):
            button = {
                "type": "button",
                "action_id": f"{CHOICE_ACTION_PREFIX}{index}",
                "text": {"type": "plain_text", "text": escape(option_label(option), 75)},
                "value": token,
            }
            if option in ("approve", "deny"):
                button["style"] = "primary" if option == "approve" else "danger"
            buttons.append(button)
        buttons.append(
            {
                "type": "button",
                "action_id": NOTE_ACTION,
                "text": {"type": "plain_text", "text": "Answer with a note…"},
                "value": token,
            }
        )
    context = (
        f"{escape(decision.organization.name)} asks for your sign-off · urgency *{decision.urgency}*"
        f" · {deadline_phrase(decision.expires_at)}"
    )
    return [
        *_summary_blocks(decision),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        {"type": "actions", "block_id": "cs_answer", "elements": buttons},
    ]


def outcome_blocks(decision: Decision) -> list[dict]:
    outcome = decision.outcome or {}
    by = "the deadline" if outcome.get("by") == "system" else _person(outcome.get("by", ""))
    at = decision.resolved_at.astimezone(UTC)
    line = f"*{decision.get_status_display()}*"
    if outcome.get("choice") and outcome["choice"] not in ("approve", "deny"):
        line += f" — {escape(outcome['choice'])}"
    line += f" by {by} via {outcome.get('via', '')}, {at:%Y-%m-%d %H:%M} UTC"
    blocks = [*_summary_blocks(decision), {"type": "section", "text": {"type": "mrkdwn", "text": line}}]
    for label in ("text", "note"):
        if outcome.get(label):
            blocks.append(
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": f"_{label.capitalize()}:_ {escape(outcome[label], 2800)}",
                    },
                }
            )
    return blocks


def target(client: WebClient, request: ApprovalRequest) -> tuple[str, str]:
    """(channel to post to, Slack user the request belongs to, empty for a channel)."""
    address = request.address
    if address.startswith("slack:U") or address.startswith("slack:W"):
        user = address.removeprefix("slack:")
        return user, user
    if address.startswith("slack:"):
        return address.removeprefix("slack:"), ""
    user = client.users_lookupByEmail(email=address)["user"]["id"]
    return user, user


def call(action):
    """Run a Slack call, sorting its failures into give-up and try-again."""
    try:
        return action()
    except SlackApiError as exc:
        error = exc.response.get("error", "unknown_error")
        report = AttemptReport(
            status_code=exc.response.status_code, response_snippet=str(exc.response.data)[:2000]
        )
        if error in PERMANENT_ERRORS:
            raise PermanentFailure(f"Slack: {error}", report=report) from None
        retry_after = exc.response.headers.get("Retry-After") if error == "ratelimited" else None
        raise RetryLater(
            f"Slack: {error}", retry_after=float(retry_after) if retry_after else None, report=report
        ) from None
    except SlackClientError as exc:
        raise RetryLater(f"Slack: {type(exc).__name__}: {exc}") from None
