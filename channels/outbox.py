"""The outbox's sender for a channel: a Delivery in, the channel's SentFacts out as the
attempt's report, for decisions to persist when the outbox marks the delivery sent."""

from channels.registry import channel
from notifications.models import Delivery
from notifications.senders import AttemptReport, Sender


def sender_for_channel(name: str) -> Sender:
    def send(delivery: Delivery) -> AttemptReport:
        facts = channel(name).deliver(delivery.request, purpose=delivery.purpose, key=str(delivery.pk))
        return AttemptReport(
            status_code=facts.status_code,
            response_snippet=facts.response_snippet,
            provider_message_id=facts.provider_message_id,
            facts=facts,
        )

    send.__name__ = f"send_{name}"
    return send
