"""POST /teams/messages: the bot's messaging endpoint, where Teams sends a card's
`Action.Execute` as an `invoke` activity named `adaptiveCard/action`.

Every activity must carry a valid Bot Framework token (auth.py; otherwise 401 and nothing
happens). An answer is recorded through the decision services (single-use: a second click, or
the Bot Framework retrying the same invoke, changes nothing) and the reply is the card as it
now stands, so the clicker sees the outcome at once; everyone else's card is replaced through
the outbox. A refresh (Teams asking for the current card when someone opens it) gets the same
card. Other activities (messages to the bot, installs) are acknowledged and ignored.
"""

import logging
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from broker.errors import InvalidInput, error_response
from broker.http import UntrustedJSONError, parse_untrusted_json
from channels.answers import answer_record, request_for_token
from channels.base import AnswerRefused, InboundAnswer
from channels.teams.auth import InvalidToken, check_endorsed, verify_token
from channels.teams.cards import ANSWER_VERB, NOTE_INPUT, OPTION_FIELD, REFRESH_VERB, TEXT_INPUT, TOKEN_FIELD
from channels.teams.channel import TeamsChannel, message_ref
from channels.teams.connector import credentials_for, known_app_ids
from decisions import services
from decisions.models import ApprovalRequest, ResponseType

logger = logging.getLogger(__name__)

INVOKE_NAME = "adaptiveCard/action"
CHANNEL = TeamsChannel()


@dataclass(frozen=True)
class Action:
    """A verified Action.Execute on one of our cards."""

    activity: dict
    request: ApprovalRequest
    verb: str
    data: dict


def _obj(value) -> dict:
    """A signed activity is still input: a part that should be an object and is not counts as empty."""
    return value if isinstance(value, dict) else {}


def _card_response(request: ApprovalRequest) -> JsonResponse:
    request = ApprovalRequest.objects.select_related("decision__organization").get(pk=request.pk)
    card = CHANNEL.card_now(request)
    return JsonResponse({"statusCode": 200, "type": "application/vnd.microsoft.card.adaptive", "value": card})


def _message_response(text: str) -> JsonResponse:
    """Teams shows `text` to the clicker and leaves the card as it is."""
    return JsonResponse(
        {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text}
    )


def _error_response(code: str, message: str) -> JsonResponse:
    """Teams shows `message` to the clicker as an error; nothing was changed."""
    return JsonResponse(
        {
            "statusCode": 400,
            "type": "application/vnd.microsoft.error",
            "value": {"code": code, "message": message},
        }
    )


def _refused(status: int, code: str, message: str) -> AnswerRefused:
    return AnswerRefused(error_response(status, code, message))


def read_activity(http_request: HttpRequest) -> tuple[dict, str]:
    """(the activity, the bot it was addressed to), once the Bot Framework's token holds. Raises
    AnswerRefused: 401 for the token, 400 for the body."""
    try:
        claims, key_id = verify_token(
            http_request.headers.get("Authorization", ""), audiences=known_app_ids()
        )
    except InvalidToken as exc:
        logger.info("teams: activity refused: %s", exc)
        raise _refused(
            401, "invalid_token", "The Bot Framework token is missing, forged, expired or not for this bot."
        ) from None
    try:
        activity = parse_untrusted_json(http_request.body.decode("utf-8"))
    except (UnicodeDecodeError, UntrustedJSONError) as exc:
        raise _refused(400, "bad_activity", f"The activity is not JSON we accept. {exc}"[:300]) from None
    if not isinstance(activity, dict):
        raise _refused(400, "bad_activity", "The activity is not a JSON object.")
    try:
        check_endorsed(key_id, str(activity.get("channelId", "")))
    except InvalidToken as exc:
        logger.info("teams: activity refused: %s", exc)
        raise _refused(401, "invalid_token", "The token's key is not endorsed for this channel.") from None
    audience = claims["aud"]
    if isinstance(audience, list):  # PyJWT checked that one of them is ours: that is the bot
        audience = next((a for a in audience if a in known_app_ids()), "")
    return activity, str(audience)


def _request_for(token: str, bot: str) -> ApprovalRequest | None:
    """The request a card refers to, if the token was addressed to its organization's bot."""
    approval = request_for_token(token, channel=CHANNEL.name)
    if approval is None or credentials_for(approval.decision.organization_id).app_id != bot:
        return None  # another organization's bot cannot answer our requests
    return approval


def read_action(activity: dict, bot: str) -> Action:
    """The card action this invoke carries. Raises AnswerRefused (400) if it is not one of ours."""
    action = _obj(_obj(activity.get("value")).get("action"))
    if action.get("type") != "Action.Execute":
        raise _refused(400, "bad_activity", "Expected an Action.Execute in value.action.")
    data = _obj(action.get("data"))
    approval = _request_for(str(data.get(TOKEN_FIELD, "")), bot)
    if approval is None:
        raise _refused(400, "unknown_action", "This card is not one of ours.")
    if not str(_obj(activity.get("from")).get("id", "")):
        raise _refused(400, "bad_activity", "The activity names no user.")
    verb = action.get("verb")
    if verb not in (ANSWER_VERB, REFRESH_VERB):
        raise _refused(400, "unknown_action", f"Unknown verb {str(verb)[:64]!r}.")
    return Action(activity=activity, request=approval, verb=verb, data=data)


def _check_clicker(action: Action) -> None:
    """A card answers only where it was posted, and in a 1:1 chat only for the person asked (a
    forwarded card is a copy, not theirs to use). Raises AnswerRefused with what to tell them."""
    ref = message_ref(action.request)
    conversation = str(_obj(action.activity.get("conversation")).get("id", ""))
    # A channel thread's conversation id is "<channel id>;messageid=<thread>": the channel is what counts.
    if ref is None or conversation.split(";")[0] != ref.conversation.split(";")[0]:
        raise AnswerRefused(
            _message_response("This card was forwarded or copied: answer it where it was posted.")
        )
    if ref.recipient:
        user = _obj(action.activity.get("from"))
        if ref.recipient not in {str(user.get("id", "")), str(user.get("aadObjectId", "")).lower()}:
            raise AnswerRefused(
                _message_response("This request is for someone else: only they can answer it.")
            )


def answer_from(action: Action) -> InboundAnswer:
    """The answer an Action.Execute carries. Raises AnswerRefused."""
    _check_clicker(action)
    decision, data = action.request.decision, action.data
    text, choice = "", ""
    if decision.response_type == ResponseType.TEXT:
        text = str(data.get(TEXT_INPUT) or "")
    else:
        index = data.get(OPTION_FIELD)
        if type(index) is not int or not 0 <= index < len(decision.options):
            raise _refused(400, "unknown_action", "The card's button names no option of this decision.")
        choice = decision.options[index]
    user = _obj(action.activity.get("from"))
    in_chat_with_them = bool(message_ref(action.request).recipient)
    return InboundAnswer(
        request=action.request,
        via=CHANNEL.via,
        choice=choice,
        text=text,
        note=str(data.get(NOTE_INPUT) or ""),
        # In a channel anyone may answer: record who did. In a 1:1 chat it is the person asked.
        answered_by="" if in_chat_with_them else f"teams:{str(user.get('id', ''))[:200]}",
        answered_by_name=str(user.get("name") or "")[:100],
        user_agent="Microsoft Teams",
    )


def answer_from_request(http_request: HttpRequest) -> InboundAnswer:
    """TeamsChannel.parse_answer: verify the activity and read the answer it carries. Raises
    AnswerRefused with the response for anything else: the current card for a refresh, an empty
    200 for an activity that is not a card action, an error for a bad token or body."""
    activity, bot = read_activity(http_request)
    if activity.get("type") != "invoke" or activity.get("name") != INVOKE_NAME:
        raise AnswerRefused(HttpResponse(status=200))  # messages to the bot, installs: nothing to do
    action = read_action(activity, bot)
    if action.verb == REFRESH_VERB:
        raise AnswerRefused(_card_response(action.request))
    return answer_from(action)


@csrf_exempt  # authenticated by the Bot Framework's token, not a browser session
@require_POST
def teams_messages(request: HttpRequest) -> HttpResponse:
    try:
        answer = CHANNEL.parse_answer(request)
    except AnswerRefused as refused:
        return refused.response
    try:
        answer_record(answer)
    except (services.DeadlinePassed, services.AlreadyResolved, services.AlreadyAnswered):
        pass  # too late, a second click, or the same invoke again: the card shows how it stands
    except (services.VerificationRequired, services.SeparationOfDuties) as exc:
        return _error_response(exc.code, exc.message)  # answered in the portal, or by someone else
    except InvalidInput as exc:
        return _error_response("invalid_answer", exc.message)
    return _card_response(answer.request)
