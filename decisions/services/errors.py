"""What a service refuses with: each is a Conflict the API maps to 409 (broker/errors.py)."""

from broker.errors import Conflict
from decisions.models import Decision


class AlreadyResolved(Conflict):
    code = "already_resolved"

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"Decision {decision.id} is already {decision.status}.")
        self.decision = decision


class AlreadyAnswered(Conflict):
    code = "already_answered"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class DeadlinePassed(Conflict):
    """Answered after expires_at, before the clock has expired it: too late all the same."""

    code = "expired"
