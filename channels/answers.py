"""Recording an answer a channel has parsed and verified. Kept apart from channels.base because
it calls into decisions.services, which itself imports the registry (and so the base)."""

from channels.base import InboundAnswer
from decisions.links import BadLink, read_request_token
from decisions.models import ApprovalRequest, Decision
from decisions.services import decision_answer


def request_for_token(token: str, *, channel: str) -> ApprovalRequest | None:
    """The approval request a signed request token (in a button or card) names, if it was
    sent over `channel`; None for a token that is forged, cut short or not of this channel.
    The caller still checks that its organization's app is the one that received it."""
    try:
        request_id, decision_id = read_request_token(token)
    except BadLink:
        return None
    return (
        ApprovalRequest.objects.select_related("decision__organization")
        .filter(pk=request_id, decision_id=decision_id, channel=channel)
        .first()
    )


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
        verified=answer.verified,
    )
