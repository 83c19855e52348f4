"""Where each kind of delivery finds its sender. A sender gets the Delivery and either returns
(sent) or raises: PermanentFailure to stop, anything else to be retried with backoff. It may
return, or attach to its exception, an AttemptReport of what the remote end answered."""

from collections.abc import Callable
from dataclasses import dataclass

from notifications.models import Delivery


@dataclass(frozen=True)
class AttemptReport:
    status_code: int | None = None
    response_snippet: str = ""


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
