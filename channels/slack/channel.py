"""Slack: approval messages with buttons, reminders in their thread, and each message updated
to show the outcome once the decision is settled (by any route). Answers come back through
interactions.py (POST /slack/interactions).

Credentials come from the organization's SlackSettings (names of environment variables) or
SLACK_BOT_TOKEN / SLACK_SIGNING_SECRET; SLACK_API_URL points the client elsewhere (a local
fake Slack in tests).
"""

from dataclasses import dataclass, replace

from django.http import HttpRequest

from channels.base import AttemptReport, Channel, InboundAnswer, MessageRef, RetryLater, SentFacts
from channels.slack import interactions
from channels.slack.messages import approval_blocks, call, client_for, escape, outcome_blocks, target
from channels.slack.models import SlackSettings
from decisions.display import deadline_phrase
from decisions.models import ApprovalRequest, Via
from notifications.models import Delivery
from notifications.senders import sender_for


@dataclass(frozen=True)
class SlackMessage:
    """One Web API call's worth of message. Which call follows from what is set: `ts` edits that
    message, `channel` posts there (in `thread_ts`'s thread), neither posts the ask to the
    approver's DM or channel, resolved when sending."""

    text: str
    blocks: list[dict] | None = None
    channel: str = ""
    thread_ts: str = ""
    ts: str = ""


def _report(response) -> SentFacts:
    return SentFacts(status_code=response.status_code, response_snippet=str(response.data)[:500])


class SlackChannel(Channel):
    name = "slack"
    via = Via.SLACK
    urls = "channels.slack.urls"
    edits_outcome = True

    def asks_email_approvers(self, organization_id: int) -> bool:
        return SlackSettings.objects.filter(organization_id=organization_id, dm_email_approvers=True).exists()

    def render_ask(self, request: ApprovalRequest, *, key: str) -> SlackMessage:
        decision = request.decision
        return SlackMessage(
            text=f"Approval needed: {escape(decision.action, 280)}", blocks=approval_blocks(decision, request)
        )

    def render_reminder(self, request: ApprovalRequest, *, key: str) -> SlackMessage:
        request.refresh_from_db()
        if not request.slack_ts:
            raise RetryLater("the approval message has not been posted yet", retry_after=5)
        text = (
            f"Reminder: this still waits for your answer. It {deadline_phrase(request.decision.expires_at)}."
        )
        return SlackMessage(text=text, channel=request.slack_channel, thread_ts=request.slack_ts)

    def render_outcome(self, request: ApprovalRequest, *, key: str) -> SlackMessage | None:
        request.refresh_from_db()
        if not request.slack_ts:
            if request.deliveries.filter(
                purpose=Delivery.Purpose.ASK, status=Delivery.Status.PENDING
            ).exists():
                raise RetryLater("the approval message is still being posted", retry_after=2)
            return None  # no message was posted: nothing to update
        decision = request.decision
        decision.refresh_from_db()
        return SlackMessage(
            text=f"{decision.get_status_display()}: {escape(decision.action, 280)}",
            blocks=outcome_blocks(decision),
            channel=request.slack_channel,
            ts=request.slack_ts,
        )

    def parse_answer(self, http_request: HttpRequest, **url_kwargs: str) -> InboundAnswer:
        return interactions.parse_answer(http_request)

    def send(self, request: ApprovalRequest, message: SlackMessage) -> SentFacts:
        client = client_for(request.decision.organization_id)
        if message.ts:
            return _report(
                call(
                    lambda: client.chat_update(
                        channel=message.channel, ts=message.ts, text=message.text, blocks=message.blocks
                    )
                )
            )
        if message.channel:
            return _report(
                call(
                    lambda: client.chat_postMessage(
                        channel=message.channel, thread_ts=message.thread_ts or None, text=message.text
                    )
                )
            )
        channel, user = call(lambda: target(client, request))
        response = call(
            lambda: client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
        )
        ref = MessageRef(conversation=response["channel"], message=response["ts"], recipient=user)
        return replace(_report(response), message_ref=ref)


def send_slack(delivery: Delivery) -> AttemptReport | None:
    """What the outbox runs for a Slack delivery."""
    return sender_for(SlackChannel.name)(delivery)
