"""Recording an answer a channel has parsed and verified. Kept apart from channels.base because
it calls into decisions.services, which itself imports the registry (and so the base)."""

from channels.base import InboundAnswer
from decisions.models import Decision
from decisions.services import decision_answer


def answer_record(answer: InboundAnswer) -> Decision:
    """Answer through decision_answer; its errors (AlreadyResolved, AlreadyAnswered,
    DeadlinePassed, InvalidInput) are the channel's to phrase for the person answering."""
    return decision_answer(
        request_id=answer.request.pk,
        choice=answer.choice,
        text=answer.text,
        note=answer.note,
        details=answer.details,
        via=answer.via,
        answered_by=answer.answered_by,
        answered_by_name=answer.answered_by_name,
        ip=answer.ip,
        user_agent=answer.user_agent,
    )
