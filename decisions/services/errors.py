"""What a service refuses with: a Conflict the API maps to 409 (broker/errors.py), or a 403
for an answer the decision's verification or separation of duties does not allow."""

from broker.errors import Conflict, DomainError
from decisions.models import Decision, Verification


class AlreadyResolved(Conflict):
    code = "already_resolved"

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"Decision {decision.id} is already {decision.status}.")
        self.decision = decision


class AlreadyAnswered(Conflict):
    code = "already_answered"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class VerificationRequired(DomainError):
    """The decision asks for more proof of who answers than this channel gives (its
    `verification`): it is answered in the portal."""

    status = 403
    code = "verification_required"

    def __init__(self, decision: Decision) -> None:
        how = (
            "signed in with a passkey"
            if decision.verification == Verification.PASSKEY
            else "freshly signed in"
        )
        super().__init__(f"Decision {decision.id} must be answered in the portal, {how}.")
        self.decision = decision


class SeparationOfDuties(DomainError):
    """An approval the decision's separation of duties forbids: the requester's own, or a
    second stage approved by the same person."""

    status = 403
    code = "separation_of_duties"


class DeadlinePassed(Conflict):
    """Answered after expires_at, before the clock has expired it: too late all the same."""

    code = "expired"
