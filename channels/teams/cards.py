"""The Adaptive Cards Teams shows: the ask (one `Action.Execute` per option and a note field),
a card for an approver who answered while others still have to, and the outcome.

Text we did not write (the agent's action, context, details and options; an answer's note;
names) goes into TextRuns, which Teams shows as typed: a TextBlock would read it as markdown,
and `[Approve](https://evil)` would become a link.
"""

from datetime import UTC

from decisions.display import deadline_phrase, detail_rows, option_label
from decisions.links import request_token
from decisions.models import ApprovalRequest, Decision, ResponseType

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.4"  # Universal Actions (Action.Execute, refresh) need 1.4
ANSWER_VERB = "cs.answer"
REFRESH_VERB = "cs.refresh"
NOTE_INPUT = "cs_note"
TEXT_INPUT = "cs_text"
# What every Action.Execute carries back: the signed request reference, and the option's index.
TOKEN_FIELD = "cs_request"  # noqa: S105 (a field name, not a secret)
OPTION_FIELD = "cs_option"
MAX_NOTE = 5_000
MAX_TEXT = 20_000
_STYLES = {"approve": "positive", "deny": "destructive"}


def _text(*runs: dict, subtle: bool = False, spacing: str = "default") -> dict:
    block = {"type": "RichTextBlock", "inlines": list(runs), "spacing": spacing}
    if subtle:
        block["inlines"] = [{**run, "isSubtle": True} for run in runs]
    return block


def _run(text: str, *, bold: bool = False, size: str | None = None) -> dict:
    run = {"type": "TextRun", "text": text}
    if bold:
        run["weight"] = "bolder"
    if size:
        run["size"] = size
    return run


def _summary(decision: Decision) -> list[dict]:
    body = [_text(_run(decision.action, bold=True, size="medium"))]
    if decision.context:
        body.append(_text(_run(decision.context[:3000])))
    for label, value in detail_rows(decision.details)[:10]:
        body.append(_text(_run(f"{label[:200]}: ", bold=True), _run(value[:1500]), spacing="small"))
    return body


def _card(body: list[dict], actions: list[dict] | None = None, refresh: dict | None = None) -> dict:
    card: dict = {"type": "AdaptiveCard", "$schema": SCHEMA, "version": VERSION, "body": body}
    if actions:
        card["actions"] = actions
    if refresh:
        card["refresh"] = refresh
    return card


def ask_card(decision: Decision, request: ApprovalRequest, *, user_ids: list[str] = ()) -> dict:
    """The ask. `refresh` makes Teams fetch the current card when someone opens it (for the
    people in `user_ids` automatically, for anyone else on demand), so a card answered
    elsewhere (by email, on Slack, by the clock) shows the outcome wherever it is seen."""
    token = request_token(request)
    body = [
        *_summary(decision),
        _text(
            _run(
                f"{decision.organization.name} asks for your sign-off · urgency {decision.urgency}"
                f" · {deadline_phrase(decision.expires_at)}"
            ),
            subtle=True,
        ),
    ]
    if decision.response_type == ResponseType.TEXT:
        body.append(
            {
                "type": "Input.Text",
                "id": TEXT_INPUT,
                "label": "Your answer",
                "isMultiline": True,
                "isRequired": True,
                "errorMessage": "Write your answer first.",
                "maxLength": MAX_TEXT,
            }
        )
        actions = [_execute("Send", {TOKEN_FIELD: token})]
    else:
        actions = [
            _execute(
                option_label(option)[:75], {TOKEN_FIELD: token, OPTION_FIELD: index}, _STYLES.get(option)
            )
            for index, option in enumerate(decision.options)
        ]
    body.append(
        {
            "type": "Input.Text",
            "id": NOTE_INPUT,
            "label": "Note (optional)",
            "isMultiline": True,
            "maxLength": MAX_NOTE,
        }
    )
    refresh: dict = {"action": _execute("Refresh", {TOKEN_FIELD: token}, verb=REFRESH_VERB)}
    if user_ids:
        refresh["userIds"] = list(user_ids)[:60]  # Teams refreshes automatically for at most 60
    return _card(body, actions, refresh)


def _execute(title: str, data: dict, style: str | None = None, *, verb: str = ANSWER_VERB) -> dict:
    action = {"type": "Action.Execute", "title": title, "verb": verb, "data": data}
    if style:
        action["style"] = style
    return action


def answered_card(decision: Decision, request: ApprovalRequest) -> dict:
    """This approver's part is done (answered here or elsewhere); the decision still waits for
    others (a quorum, a next stage)."""
    if request.state == ApprovalRequest.State.ANSWERED:
        line = f"You answered: {option_label(request.choice) if request.choice else 'in words'}"
    else:
        line = "Your part is settled: answered elsewhere, or the sign-off moved on."
    body = [
        *_summary(decision),
        _text(_run(line, bold=True)),
        _text(_run("Waiting for the other approvers.")),
    ]
    token = request_token(request)
    # Still refreshable: once the others answer, the card shows the outcome.
    return _card(body, refresh={"action": _execute("Refresh", {TOKEN_FIELD: token}, verb=REFRESH_VERB)})


def outcome_card(decision: Decision) -> dict:
    """The settled decision: what, by whom, over which channel, when. No buttons."""
    outcome = decision.outcome or {}
    by = "the deadline" if outcome.get("by") == "system" else str(outcome.get("by", ""))
    line = decision.get_status_display()
    if outcome.get("choice") and outcome["choice"] not in ("approve", "deny"):
        line += f" — {outcome['choice']}"
    at = decision.resolved_at.astimezone(UTC) if decision.resolved_at else None
    when = f", {at:%Y-%m-%d %H:%M} UTC" if at else ""
    body = [*_summary(decision), _text(_run(f"{line} by {by} via {outcome.get('via', '')}{when}", bold=True))]
    for label in ("text", "note"):
        if outcome.get(label):
            body.append(_text(_run(f"{label.capitalize()}: ", bold=True), _run(str(outcome[label])[:2800])))
    return _card(body)


def current_card(request: ApprovalRequest, *, recipient: str = "") -> dict:
    """What the card for this request should show now; `recipient`: the person it was sent to."""
    decision = request.decision
    if not decision.is_pending:
        return outcome_card(decision)
    if request.state != ApprovalRequest.State.PENDING:
        return answered_card(decision, request)
    return ask_card(decision, request, user_ids=[recipient] if recipient.startswith("29:") else [])
