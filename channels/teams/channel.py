"""The Teams channel: the ask as an Adaptive Card in the approver's 1:1 chat with the bot (or in
a channel), a reminder replying to it, and the card replaced by the outcome once the decision
is settled, by any route. Answers arrive at POST /teams/messages (views.py)."""

from dataclasses import dataclass

from channels.base import Channel, InboundAnswer, MessageRef, PermanentFailure, RetryLater, SentFacts
from channels.teams.addresses import ADDRESS_PATTERN, PREFIX, is_teams_user_id, parse_teams_address
from channels.teams.cards import ask_card, current_card, outcome_card
from channels.teams.connector import Connector, card_activity, credentials_for
from decisions.display import deadline_phrase
from decisions.models import ApprovalRequest
from notifications.models import Delivery


@dataclass(frozen=True)
class TeamsPost:
    """One thing to do at the connector: post `activity` (to a person, whose 1:1 chat is
    opened first, or to a conversation), reply with it to `reply_to`, or put it in place of
    the posted card `replace`."""

    activity: dict
    person: str = ""
    conversation: str = ""
    reply_to: str = ""
    replace: str = ""


def message_ref(request: ApprovalRequest) -> MessageRef | None:
    """Where this request's card was posted, as decisions stored it from the ask's SentFacts."""
    if not request.slack_ts:
        return None
    return MessageRef(
        conversation=request.slack_channel, message=request.slack_ts, recipient=request.slack_user
    )


def _connector(request: ApprovalRequest) -> Connector:
    return Connector(credentials_for(request.decision.organization_id))


class TeamsChannel(Channel):
    name = "teams"
    via = "teams"
    urls = "channels.teams.urls"
    edits_outcome = True
    address_prefix = PREFIX
    address_pattern = ADDRESS_PATTERN
    address_examples = "teams:29:<user id>, teams:<Entra object id>, teams:19:<conversation id>"

    def normalize_address(self, value: str) -> str:
        return PREFIX + parse_teams_address(value)[1]

    def render_ask(self, request: ApprovalRequest, *, key: str) -> TeamsPost:
        try:
            target, identifier = parse_teams_address(request.address)
        except ValueError as exc:
            raise PermanentFailure(str(exc)) from None
        card = ask_card(
            request.decision, request, user_ids=[identifier] if is_teams_user_id(identifier) else []
        )
        activity = card_activity(card, summary=f"Approval needed: {request.decision.action}")
        if target == "person":
            return TeamsPost(activity=activity, person=identifier)
        return TeamsPost(activity=activity, conversation=identifier)

    def render_reminder(self, request: ApprovalRequest, *, key: str) -> TeamsPost:
        ref = message_ref(request)
        if ref is None:
            raise RetryLater("the approval card has not been posted yet", retry_after=5)
        text = (
            f"Reminder: this still waits for your answer. It {deadline_phrase(request.decision.expires_at)}."
        )
        return TeamsPost(
            activity={"type": "message", "text": text}, conversation=ref.conversation, reply_to=ref.message
        )

    def render_outcome(self, request: ApprovalRequest, *, key: str) -> TeamsPost | None:
        ref = message_ref(request)
        if ref is None:
            if request.deliveries.filter(
                purpose=Delivery.Purpose.ASK, status=Delivery.Status.PENDING
            ).exists():
                raise RetryLater("the approval card is still being posted", retry_after=2)
            return None  # nothing was posted: nothing to replace
        decision = request.decision
        decision.refresh_from_db()
        activity = card_activity(
            outcome_card(decision), summary=f"{decision.get_status_display()}: {decision.action}"
        )
        return TeamsPost(activity=activity, conversation=ref.conversation, replace=ref.message)

    def send(self, request: ApprovalRequest, message: TeamsPost) -> SentFacts:
        connector = _connector(request)
        if message.replace:
            connector.update(message.conversation, message.replace, message.activity)
            return SentFacts(status_code=200, response_snippet=f"activity {message.replace} replaced")
        if message.reply_to:
            activity_id = connector.send(message.conversation, message.activity, reply_to=message.reply_to)
            return SentFacts(status_code=201, response_snippet=f"reminder {activity_id}")
        conversation = message.conversation or connector.create_personal_conversation(message.person)
        activity_id = connector.send(conversation, message.activity)
        if not activity_id:
            raise RetryLater("Teams: the card was posted but no activity id came back")
        return SentFacts(
            message_ref=MessageRef(conversation=conversation, message=activity_id, recipient=message.person),
            status_code=201,
            response_snippet=f"activity {activity_id} in {conversation}"[:500],
        )

    def parse_answer(self, http_request, **url_kwargs: str) -> InboundAnswer:
        from channels.teams.views import answer_from_request  # the views import this module

        return answer_from_request(http_request)

    def card_now(self, request: ApprovalRequest) -> dict:
        """The card as it should read now: the reply to a click or a refresh."""
        ref = message_ref(request)
        return current_card(request, recipient=ref.recipient if ref else "")
