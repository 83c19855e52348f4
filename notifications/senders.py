"""Where each kind of delivery finds its sender. A sender gets the Delivery and either returns
(sent) or raises: PermanentFailure to stop, anything else to be retried with backoff. It may
return, or attach to its exception, an AttemptReport of what the remote end answered.

The outbox knows deliveries, not what they are about. Whoever created a delivery may subscribe
hooks: `skip_reason` (is it still wanted, just before sending) and `on_sent` (run in the
transaction that marks it sent, with the sender's report: the place to persist its facts)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from notifications.models import Delivery


@dataclass(frozen=True)
class AttemptReport:
    status_code: int | None = None
    response_snippet: str = ""
    provider_message_id: str = ""  # kept on the delivery: providers' tracking events refer to it
    facts: Any = None  # what the sender learned, for the on_sent hooks (e.g. channels.base.SentFacts)


Sender = Callable[[Delivery], AttemptReport | None]

_SENDERS: dict[str, Sender] = {}


class PermanentFailure(Exception):
    """Retrying cannot help (bad address, 4xx from a callback receiver)."""

    def __init__(self, message: str, *, report: AttemptReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class RetryLater(Exception):
    """A transient failure; retry_after (seconds) overrides the backoff when the remote says so."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, report: AttemptReport | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.report = report


def register(kind: str) -> Callable[[Sender], Sender]:
    def decorator(sender: Sender) -> Sender:
        _SENDERS[kind] = sender
        return sender

    return decorator


def sender_for(kind: str) -> Sender | None:
    return _SENDERS.get(kind)


SkipReason = Callable[[Delivery], str | None]
OnSent = Callable[[Delivery, AttemptReport | None], None]
_SKIP_REASONS: list[SkipReason] = []
_ON_SENT: list[OnSent] = []


def subscribe(*, skip_reason: SkipReason | None = None, on_sent: OnSent | None = None) -> None:
    """Hooks for deliveries of every kind (see the module docstring); idempotent."""
    if skip_reason and skip_reason not in _SKIP_REASONS:
        _SKIP_REASONS.append(skip_reason)
    if on_sent and on_sent not in _ON_SENT:
        _ON_SENT.append(on_sent)


def skip_reason(delivery: Delivery) -> str | None:
    return next((reason for hook in _SKIP_REASONS if (reason := hook(delivery))), None)


def run_on_sent(delivery: Delivery, report: AttemptReport | None) -> None:
    for hook in _ON_SENT:
        hook(delivery, report)
