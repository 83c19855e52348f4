"""POST /slack/interactions: a button pressed or a modal submitted in Slack.

parse_answer verifies the request with slack-sdk's SignatureVerifier, against the signing secret
of the organization whose message it is (forged, unsigned or older than five minutes: 401,
nothing happens), and reads the answer; the view records it through decision_answer, so
Slack's 3-second acknowledgement is met with time to spare; updating the message happens
afterwards, through the outbox. Whatever cannot be done is said back privately to the person
who clicked (an ephemeral reply).
"""

import logging
import os
from urllib.parse import parse_qs

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_sdk.errors import SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from broker.errors import InvalidInput, error_response
from broker.http import UntrustedJSONError, parse_untrusted_json
from channels.answers import answer_record, request_for_token
from channels.base import AnswerRefused, InboundAnswer
from channels.slack.messages import (
    CHOICE_ACTION_PREFIX,
    MODAL_CALLBACK,
    NOTE_ACTION,
    PORTAL_ACTION,
    client_for,
    credentials_for,
    escape,
    is_slack_url,
)
from channels.slack.models import SlackSettings
from decisions import services
from decisions.links import portal_url, request_token
from decisions.models import ApprovalRequest, ResponseType, Via

logger = logging.getLogger(__name__)


def _known_secrets() -> set[str]:
    from django.conf import settings

    secrets = {settings.SLACK_SIGNING_SECRET}
    for name in SlackSettings.objects.exclude(signing_secret_env="").values_list(
        "signing_secret_env", flat=True
    ):
        secrets.add(os.environ.get(name, ""))
    return {secret for secret in secrets if secret}


def _verifying_secret(request: HttpRequest) -> str | None:
    """The signing secret that verifies this request, or None."""
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not timestamp.isdigit() or not signature:
        return None
    try:
        body = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return None  # Slack signs text; these bytes are not from Slack
    for secret in _known_secrets():
        if SignatureVerifier(secret).is_valid(body=body, timestamp=timestamp, signature=signature):
            return secret
    return None


def _obj(value) -> dict:
    """A signed payload is still input: a part that should be an object and is not counts as empty."""
    return value if isinstance(value, dict) else {}


def _tell(payload: dict, text: str) -> None:
    """An ephemeral reply to the clicker; best effort, the outcome does not depend on it."""
    url = payload.get("response_url")
    if not url:
        return
    if not isinstance(url, str) or not is_slack_url(url):
        # Signed or not, a URL from a payload must not make us fetch inside our own network.
        logger.warning("slack: response_url not on Slack's hosts, not fetched: %r", str(url)[:200])
        return
    try:
        WebhookClient(url, timeout=3).send(text=text, response_type="ephemeral", replace_original=False)
    except (SlackClientError, OSError):
        logger.warning("slack: ephemeral reply failed", exc_info=True)


def _request_for(token: str, secret: str) -> ApprovalRequest | None:
    """The request a button or modal refers to, if its organization's Slack app signed this."""
    approval = request_for_token(token, channel="slack")
    if approval is None or credentials_for(approval.decision.organization_id).signing_secret != secret:
        return None  # another organization's Slack app cannot answer our requests
    return approval


def _not_allowed(approval: ApprovalRequest, user_id: str) -> str | None:
    if approval.slack_user and user_id != approval.slack_user:
        return f"This request is for <@{approval.slack_user}>: only they can answer it."
    return None


def _closed_message(approval: ApprovalRequest) -> str:
    decision = approval.decision
    decision.refresh_from_db()
    if decision.is_pending:
        return "You have already answered this one; it waits for the other approvers."
    outcome = decision.outcome or {}
    by = "the deadline" if outcome.get("by") == "system" else outcome.get("by", "")
    return f"Already {decision.status} by {escape(by)} via {outcome.get('via')}. Nothing was changed."


def _problem(answer: InboundAnswer) -> str | None:
    """Record the answer; a message for the clicker if it was not taken."""
    try:
        answer_record(answer)
    except services.SeparationOfDuties as exc:
        return escape(exc.message)
    except services.VerificationRequired as exc:
        return f"{exc.message} Open it in Countersign: {portal_url(answer.request.decision_id)}"
    except services.DeadlinePassed:
        return "Too late: this request expired before your answer. Nothing was changed."
    except (services.AlreadyResolved, services.AlreadyAnswered):
        return _closed_message(answer.request)
    except InvalidInput as exc:
        return escape(exc.message)  # it may quote what was typed into the modal
    return None


def _inbound(approval: ApprovalRequest, payload: dict, *, choice: str = "", text: str = "", note: str = ""):
    user = _obj(payload.get("user"))
    return InboundAnswer(
        request=approval,
        via=Via.SLACK,
        choice=choice,
        text=text,
        note=note,
        # In a channel anyone may answer: record who did. In a DM it is the approver.
        answered_by="" if approval.slack_user else f"slack:{user.get('id', '')}",
        answered_by_name=str(user.get("username") or user.get("name") or "")[:100],
        user_agent="Slack",
        reply_to=payload,
    )


def _answer_modal(approval: ApprovalRequest) -> dict:
    decision = approval.decision
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape(decision.action, 2900)}*"}}
    ]
    if decision.response_type == ResponseType.TEXT:
        blocks.append(
            {
                "type": "input",
                "block_id": "cs_text",
                "label": {"type": "plain_text", "text": "Your answer"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "text",
                    "multiline": True,
                    "max_length": 3000,
                },
            }
        )
    else:
        # value goes back to us untouched on submit; only the label is shown, so only it is escaped
        options = [
            {"text": {"type": "plain_text", "text": escape(o, 75)}, "value": o} for o in decision.options
        ]
        blocks.append(
            {
                "type": "input",
                "block_id": "cs_choice",
                "label": {"type": "plain_text", "text": "Your answer"},
                "element": {"type": "static_select", "action_id": "choice", "options": options},
            }
        )
    blocks.append(
        {
            "type": "input",
            "block_id": "cs_note",
            "optional": True,
            "label": {"type": "plain_text", "text": "Note"},
            "element": {
                "type": "plain_text_input",
                "action_id": "note",
                "multiline": True,
                "max_length": 3000,
            },
        }
    )
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "private_metadata": request_token(approval),
        "title": {"type": "plain_text", "text": "Your answer"},
        "submit": {"type": "plain_text", "text": "Send"},
        "blocks": blocks,
    }


def _approval_and_user(payload: dict, token: str, secret: str, what: str) -> tuple[ApprovalRequest, str]:
    """The request a button or form refers to and the Slack user who used it."""
    approval = _request_for(token, secret)
    if approval is None:
        raise AnswerRefused(error_response(400, "unknown_action", f"This {what} is not one of ours."))
    user_id = str(_obj(payload.get("user")).get("id", ""))
    if not user_id:
        raise AnswerRefused(error_response(400, "bad_payload", "The payload names no user."))
    return approval, user_id


def _acknowledged(payload: dict, message: str) -> AnswerRefused:
    _tell(payload, message)
    return AnswerRefused(HttpResponse(status=200))


def _open_form(approval: ApprovalRequest, payload: dict) -> AnswerRefused:
    if not approval.decision.is_pending or approval.state != ApprovalRequest.State.PENDING:
        return _acknowledged(payload, _closed_message(approval))
    try:
        client_for(approval.decision.organization_id).views_open(
            trigger_id=str(payload.get("trigger_id", "")), view=_answer_modal(approval)
        )
    except Exception:
        logger.warning("slack: views.open failed", exc_info=True)
        _tell(payload, "Sorry, the answer form could not be opened. Try again.")
    return AnswerRefused(HttpResponse(status=200))


def _button_answer(payload: dict, secret: str) -> InboundAnswer:
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    action_id, token = str(action.get("action_id", "")), str(action.get("value", ""))
    if action_id == PORTAL_ACTION:
        raise AnswerRefused(HttpResponse(status=200))  # a link button: the browser went to the portal
    approval, user_id = _approval_and_user(payload, token, secret, "button")
    if problem := _not_allowed(approval, user_id):
        raise _acknowledged(payload, problem)
    if action_id == NOTE_ACTION:
        raise _open_form(approval, payload)
    index = action_id.removeprefix(CHOICE_ACTION_PREFIX)
    options = approval.decision.options
    if not action_id.startswith(CHOICE_ACTION_PREFIX) or not index.isdigit() or int(index) >= len(options):
        raise AnswerRefused(error_response(400, "unknown_action", f"Unknown action {action_id[:64]!r}."))
    return _inbound(approval, payload, choice=options[int(index)])


def _form_errors(message: str) -> JsonResponse:
    return JsonResponse({"response_action": "errors", "errors": {"cs_note": message[:150]}})


def _modal_answer(payload: dict, secret: str) -> InboundAnswer:
    view = payload.get("view") if isinstance(payload.get("view"), dict) else {}
    if view.get("callback_id") != MODAL_CALLBACK:
        raise AnswerRefused(HttpResponse(status=200))
    approval, user_id = _approval_and_user(payload, str(view.get("private_metadata", "")), secret, "form")
    if problem := _not_allowed(approval, user_id):
        raise AnswerRefused(_form_errors(problem))
    values = _obj(_obj(view.get("state")).get("values"))

    def value(block: str, action: str) -> str:
        field = _obj(_obj(values.get(block)).get(action))
        selected = _obj(field.get("selected_option"))
        return str(selected.get("value") or field.get("value") or "")

    return _inbound(
        approval,
        payload,
        choice=value("cs_choice", "choice"),
        text=value("cs_text", "text"),
        note=value("cs_note", "note"),
    )


def parse_answer(request: HttpRequest) -> InboundAnswer:
    """The answer a signed interaction carries (a choice button, a submitted form). Raises
    AnswerRefused with the response for everything else: a bad signature or payload, a button
    that opens the form, someone answering for another."""
    secret = _verifying_secret(request)
    if secret is None:
        raise AnswerRefused(
            error_response(401, "invalid_signature", "The Slack signature is missing, wrong or too old.")
        )
    try:
        form = parse_qs(request.body.decode("utf-8"), strict_parsing=True)["payload"][0]
    except (KeyError, IndexError, ValueError, UnicodeDecodeError):
        raise AnswerRefused(
            error_response(400, "bad_payload", "Expected a form field 'payload' holding JSON.")
        ) from None
    try:
        # Signed by Slack, but parsed like any JSON from outside: 5 000 levels of nesting, a NUL
        # or a lone surrogate is a 400 here as in the API, not a 500 further in.
        payload = parse_untrusted_json(form)
    except UntrustedJSONError as exc:
        raise AnswerRefused(
            error_response(400, "bad_payload", f"The payload is not JSON we accept. {exc}"[:300])
        ) from None
    if not isinstance(payload, dict):
        raise AnswerRefused(error_response(400, "bad_payload", "The payload is not a JSON object."))
    if payload.get("type") == "block_actions":
        return _button_answer(payload, secret)
    if payload.get("type") == "view_submission":
        return _modal_answer(payload, secret)
    raise AnswerRefused(HttpResponse(status=200))  # other interactions: acknowledged, nothing to do


@csrf_exempt  # authenticated by Slack's signature, not a browser session
@require_POST
def slack_interactions(request: HttpRequest) -> HttpResponse:
    try:
        answer = parse_answer(request)
    except AnswerRefused as refused:
        return refused.response
    problem = _problem(answer)
    if problem and answer.reply_to.get("type") == "view_submission":
        return _form_errors(problem)
    if problem:
        _tell(answer.reply_to, problem)
    return HttpResponse(status=200)
