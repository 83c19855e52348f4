"""What decisions asks of the outbox, and what it does with the answers: whether a delivery is
still wanted, the facts a sent one brings back (stored in the transaction that marks it sent),
and the callback payload (the outbox posts it, signed, knowing nothing of decisions)."""

import json

from django.utils import timezone

from channels.base import SentFacts
from decisions.models import ApprovalRequest
from decisions.selectors import decision_get
from decisions.serializers import DecisionOutput
from notifications import callbacks, senders
from notifications.models import Delivery
from notifications.senders import AttemptReport


def delivery_skip_reason(delivery: Delivery) -> str | None:
    """Why an ask or a reminder should not go out after all, or None to send it."""
    asking = delivery.purpose in (Delivery.Purpose.ASK, Delivery.Purpose.REMIND)
    if asking and not delivery.decision.is_pending:
        return f"not sent: the decision is already {delivery.decision.status}"
    if delivery.purpose == Delivery.Purpose.REMIND and delivery.request.state != "pending":
        return "not sent: the approver has answered or was released"
    return None


def approval_request_notified(delivery: Delivery, report: AttemptReport | None) -> None:
    """Runs inside the outbox's transaction marking `delivery` sent: an ask marks its request
    notified and keeps where the channel posted the message (for reminders and the outcome)."""
    if not delivery.request_id or delivery.purpose != Delivery.Purpose.ASK:
        return
    ApprovalRequest.objects.filter(pk=delivery.request_id, notified_at__isnull=True).update(
        notified_at=delivery.sent_at or timezone.now()
    )
    facts = report.facts if report else None
    if isinstance(facts, SentFacts) and (ref := facts.message_ref):
        ApprovalRequest.objects.filter(pk=delivery.request_id).update(
            slack_channel=ref.conversation, slack_ts=ref.message, slack_user=ref.recipient
        )


def callback_body(delivery: Delivery) -> str:
    """The decision.resolved event a callback delivery posts: the decision as GET shows it."""
    decision = decision_get(organization_id=delivery.organization_id, decision_id=delivery.decision_id)
    event = {
        "type": "decision.resolved",
        "timestamp": decision.resolved_at.isoformat().replace("+00:00", "Z"),
        "data": DecisionOutput(decision).data,
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def send_callback(delivery: Delivery) -> AttemptReport:
    return callbacks.post_signed(delivery, url=delivery.decision.callback_url, body=callback_body(delivery))


def subscribe() -> None:
    """Plug decisions into the outbox (from DecisionsConfig.ready)."""
    senders.subscribe(skip_reason=delivery_skip_reason, on_sent=approval_request_notified)
    senders.register(Delivery.Kind.CALLBACK)(send_callback)
