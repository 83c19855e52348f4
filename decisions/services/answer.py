"""Answers: one approver's, and the resolution or next stage it may bring."""

from django.db import transaction
from django.utils import timezone

from audit.services import AuditEntry, audit_record_many
from broker import tracing
from broker.errors import InvalidInput
from decisions.models import ApprovalRequest, Decision, ResponseType, Status, Verification
from decisions.outcomes import iso
from decisions.routing import approvals_required, expand_addresses
from decisions.services.asking import ask, asked_entries
from decisions.services.errors import (
    AlreadyAnswered,
    AlreadyResolved,
    DeadlinePassed,
    SeparationOfDuties,
    VerificationRequired,
)
from decisions.services.resolve import announce, build_outcome, transition

MAX_NOTE_LENGTH = 5_000
MAX_TEXT_LENGTH = 20_000


@transaction.atomic
def decision_answer(
    *,
    request_id: int,
    choice: str = "",
    text: str = "",
    note: str = "",
    details: dict | None = None,
    via: str,
    answered_by: str = "",
    answered_by_name: str = "",
    ip: str = "",
    user_agent: str = "",
    verified: str = Verification.LINK,
) -> Decision:
    """Record one approver's answer, and resolve the decision when it settles it: a deny at
    once, an approval when the stage's quorum is met (then the next stage is asked, if any),
    any other option or a text answer as `responded`. `verified` is how the caller proved who
    answers (link, session, passkey); it is recorded in the outcome and must meet the decision's
    `verification`.

    Raises AlreadyResolved if the decision is not pending, DeadlinePassed after its
    expires_at, VerificationRequired if `verified` falls short, SeparationOfDuties for the
    requester's approval or a second stage's by the same person, AlreadyAnswered if this
    approver answered before, InvalidInput for a choice
    not among the options, a missing text answer, or edited details the decision does not allow.
    """
    request = ApprovalRequest.objects.get(pk=request_id)
    # The row lock serialises answers to one decision, so quorum counts are exact. NO KEY: a
    # plain FOR UPDATE also blocks the KEY SHARE lock every insert referencing this decision
    # takes (an audit event, a delivery), and a worker marking an email sent holds its
    # request row while it inserts one: the two would deadlock.
    decision = Decision.objects.select_for_update(no_key=True).get(pk=request.decision_id)
    if not decision.is_pending:
        raise AlreadyResolved(decision)
    now = timezone.now()
    if decision.expires_at <= now:
        raise DeadlinePassed(f"Decision {decision.id} expired at {iso(decision.expires_at)}.")
    if not Verification.satisfies(verified, decision.verification):
        raise VerificationRequired(decision)
    _check_answer(decision, choice=choice, text=text, note=note, details=details)
    if choice == "approve":
        _check_approver(decision, request, answered_by or request.address)
    if decision.response_type == ResponseType.TEXT:
        choice = ""
    won = ApprovalRequest.objects.filter(pk=request.pk, state=ApprovalRequest.State.PENDING).update(
        state=ApprovalRequest.State.ANSWERED,
        answered_at=now,
        answered_via=via,
        answered_by=answered_by,
        choice=choice,
        text=text,
        note=note,
        edited_details=details,
    )
    if not won:
        raise AlreadyAnswered(f"{request.address} has already answered decision {decision.id}.")
    # Their other requests (the same person on another channel) are settled by this answer.
    ApprovalRequest.objects.filter(
        decision_id=decision.pk, address=request.address, state=ApprovalRequest.State.PENDING
    ).update(state=ApprovalRequest.State.CLOSED)

    by = answered_by or request.address
    resolved_as = _settle(decision, request, choice)
    next_requests = []
    if resolved_as is not None:
        outcome = build_outcome(
            decision,
            status=resolved_as,
            by=by,
            via=via,
            at=now,
            choice=choice or None,
            text=text or None,
            note=note or None,
            details=details,
            verified=verified,
        )
        transition(decision, outcome=outcome)
    elif choice == "approve" and _stage_complete(decision, request.stage):
        next_requests = _advance_stage(decision)

    answered = AuditEntry(
        event="decision.answered",
        actor=by,
        decision_id=decision.id,
        channel=via,
        payload={
            "address": request.address,
            "choice": choice,
            "text": text,
            "note": note,
            "edited_details": details,
            "ip": ip,
            "user_agent": user_agent,
            "verified": verified,
            **({"name": answered_by_name} if answered_by_name else {}),
        },
    )
    entries = [answered, *asked_entries(decision, next_requests)]
    tracing.record_on_commit(decision, "decision.answer", start=now, attributes={"countersign.via": via})
    if resolved_as is not None:
        announce(decision, also=entries)
    else:
        audit_record_many(organization_id=decision.organization_id, entries=entries)
    return decision


def _check_approver(decision: Decision, request: ApprovalRequest, approver: str) -> None:
    """Separation of duties at an approval. Raises SeparationOfDuties."""
    if decision.requested_by and approver.lower() == decision.requested_by:
        raise SeparationOfDuties(
            f"{approver} asked for decision {decision.id}: someone else must approve it."
        )
    if (
        decision.distinct_stage_approvers
        and request.stage > 0
        and ApprovalRequest.objects.filter(
            decision_id=decision.pk, stage__lt=request.stage, address=request.address, choice="approve"
        ).exists()
    ):
        raise SeparationOfDuties(
            f"{request.address} approved an earlier stage of decision {decision.id}: "
            "someone else must approve this one."
        )


def _check_answer(decision: Decision, *, choice: str, text: str, note: str, details: dict | None) -> None:
    if decision.response_type == ResponseType.TEXT:
        if not text.strip():
            raise InvalidInput("This decision asks for an answer in words.", fields={"text": ["required"]})
    elif choice not in decision.options:
        raise InvalidInput(
            f"'{choice[:64]}' is not one of the options.", fields={"choice": [f"one of {decision.options}"]}
        )
    if _has_nul([note, text, details]):
        # PostgreSQL cannot store NUL in text or jsonb; the API's parser refuses it, forms must too.
        raise InvalidInput("Answers must not contain NUL characters.", fields={"note": ["no NUL characters"]})
    if len(note) > MAX_NOTE_LENGTH:
        raise InvalidInput(
            "The note is too long.", fields={"note": [f"at most {MAX_NOTE_LENGTH} characters"]}
        )
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidInput(
            "The answer is too long.", fields={"text": [f"at most {MAX_TEXT_LENGTH} characters"]}
        )
    if details is not None and (not decision.allow_edit or choice != "approve"):
        raise InvalidInput(
            "Details can be edited only when approving a decision that allows it.",
            fields={"details": ["not editable"]},
        )


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _settle(decision: Decision, request: ApprovalRequest, choice: str) -> str | None:
    """The status this answer resolves the decision to, or None while it stays pending."""
    if decision.response_type == ResponseType.TEXT:
        return Status.RESPONDED
    if choice == "deny":
        return Status.DENIED
    if choice != "approve":
        return Status.RESPONDED
    is_last_stage = request.stage >= len(decision.stages) - 1
    if is_last_stage and _stage_complete(decision, request.stage):
        return Status.APPROVED
    return None


def _stage_complete(decision: Decision, stage: int) -> bool:
    """Enough approvals in the stage. People, not requests: alice asked by email and on Slack
    approves once. "all" means as many approvals as people first asked (level 0), and an
    escalation approver's approval counts towards it: escalating stands in for someone away,
    it never makes approval harder."""
    stage_requests = ApprovalRequest.objects.filter(decision_id=decision.pk, stage=stage)
    approvers = stage_requests.filter(choice="approve").values("address").distinct().count()
    first_asked = stage_requests.filter(level=0).values("address").distinct().count()
    return approvers >= approvals_required(decision.stages[stage]["quorum"], first_asked)


def _advance_stage(decision: Decision) -> list[ApprovalRequest]:
    """Ask the next stage; the previous stage's unanswered requests are closed."""
    stage = decision.current_stage + 1
    Decision.objects.filter(pk=decision.pk).update(current_stage=stage)
    ApprovalRequest.objects.filter(
        decision_id=decision.pk, stage__lt=stage, state=ApprovalRequest.State.PENDING
    ).update(state=ApprovalRequest.State.CLOSED)
    decision.current_stage = stage
    recipients = expand_addresses(
        organization_id=decision.organization_id, addresses=decision.stages[stage]["approvers"]
    )
    return ask(decision, recipients, stage=stage, level=0)
