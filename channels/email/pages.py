"""The approver's one-click pages at /a/<token>: the email channel's inbound half.

GET shows the decision and a confirm button, and changes nothing: mail scanners (Safe Links,
Mimecast, Proofpoint) fetch every link in a message, so a GET must never answer. The confirm
button POSTs, and the POST answers once, through decision_answer.
"""

import math

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from broker.errors import InvalidInput
from channels.answers import answer_record
from channels.base import AnswerRefused, InboundAnswer, client_facts
from decisions import selectors, services
from decisions.display import BUTTON_COLOURS, OTHER_BUTTON_COLOUR, deadline_phrase, detail_rows, option_label
from decisions.links import BadLink, portal_url, read_link
from decisions.models import ApprovalRequest, ResponseType, Verification, Via

EDITABLE_TYPES = (str, int, float, bool)


def _page(request: HttpRequest, template: str, context: dict, *, status: int = 200) -> HttpResponse:
    response = render(request, template, context, status=status)
    # The URL is a credential: never leak it in a Referer, never cache the page, never index it.
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def problem_page(request: HttpRequest, status: int, title: str, message: str, **link) -> HttpResponse:
    context = {"title": title, "message": message, **link}
    return _page(request, "approvals/problem.html", context, status=status)


def _portal_only_page(request: HttpRequest, approval: ApprovalRequest) -> HttpResponse:
    """A decision that needs more than a link (its `verification`) is answered in the portal."""
    return problem_page(
        request,
        403,
        "Answer this in Countersign",
        "This decision asks you to sign in before you answer it.",
        link=portal_url(approval.decision_id),
        link_label="Open it in Countersign",
    )


def _editable_details(approval: ApprovalRequest, choice: str) -> list[dict]:
    decision = approval.decision
    if not (decision.allow_edit and choice == "approve"):
        return []
    return [
        {"key": key, "value": value, "field": f"detail__{key}", "kind": type(value).__name__}
        for key, value in decision.details.items()
        if isinstance(value, EDITABLE_TYPES)
    ]


def _context(approval: ApprovalRequest, choice: str, **extra) -> dict:
    decision = approval.decision
    return {
        "approval": approval,
        "decision": decision,
        "organization": decision.organization,
        "choice": choice,
        "choice_label": option_label(choice) if choice else "Send answer",
        "colour": BUTTON_COLOURS.get(choice, OTHER_BUTTON_COLOUR),
        "is_text": decision.response_type == ResponseType.TEXT,
        "deadline": deadline_phrase(decision.expires_at),
        "details": detail_rows(decision.details),
        "editable": _editable_details(approval, choice),
        "outcome": decision.outcome,
        **extra,
    }


def _closed_page(request: HttpRequest, approval: ApprovalRequest, *, status: int) -> HttpResponse | None:
    """The page for a link that can no longer answer, or None if it still can."""
    approval.refresh_from_db()
    decision = approval.decision
    decision.refresh_from_db()
    if decision.is_pending and decision.expires_at <= timezone.now():
        reason = "expired"
    elif not decision.is_pending:
        reason = "resolved"
    elif approval.state == ApprovalRequest.State.ANSWERED:
        reason = "answered"
    else:
        return None
    return _page(request, "channels/email/closed.html", _context(approval, "", reason=reason), status=status)


def _edited_details(approval: ApprovalRequest, choice: str, form) -> dict | None:
    """The details as the approver left them, typed like the originals; None if unchanged."""
    fields = _editable_details(approval, choice)
    edited = dict(approval.decision.details)
    for field in fields:
        if field["field"] not in form:
            continue
        raw = form[field["field"]].strip()
        original = field["value"]
        if isinstance(original, bool):
            edited[field["key"]] = raw.lower() in {"true", "yes", "on", "1"}
        elif isinstance(original, int | float):
            try:
                number = float(raw.replace(",", ""))
                if not math.isfinite(number):  # "1e999", "nan": not amounts, and not storable as JSON
                    raise ValueError(raw)
            except ValueError:
                raise InvalidInput(
                    f"{field['key']} must be a number.", fields={field["key"]: ["a number"]}
                ) from None
            edited[field["key"]] = (
                int(number) if isinstance(original, int) and number.is_integer() else number
            )
        else:
            edited[field["key"]] = raw
    return edited if edited != approval.decision.details else None


def _approval_for(request: HttpRequest, token: str) -> tuple[ApprovalRequest, str]:
    """The request and choice a link names. Raises AnswerRefused (a 404 page) for any other."""
    try:
        claim = read_link(token)
    except BadLink:
        raise AnswerRefused(
            problem_page(
                request,
                404,
                "This link is not valid",
                "It may have been cut short or changed. Open it again from the email you received.",
            )
        ) from None
    approval = selectors.approval_request_for_link(claim)
    if approval is None:
        raise AnswerRefused(
            problem_page(
                request, 404, "This link is not valid", "It does not match any request for sign-off."
            )
        )
    if approval.decision.verification != Verification.LINK and approval.decision.is_pending:
        raise AnswerRefused(_portal_only_page(request, approval))
    return approval, claim.choice


def _form_again(request: HttpRequest, approval: ApprovalRequest, choice: str, error: str) -> HttpResponse:
    # Show the form again with what they typed, but never more than could be accepted.
    note = request.POST.get("note", "")[: services.MAX_NOTE_LENGTH]
    text = request.POST.get("text", "")[: services.MAX_TEXT_LENGTH]
    context = _context(approval, choice, error=error, note=note, text=text)
    return _page(request, "channels/email/confirm.html", context, status=400)


def parse_answer(request: HttpRequest, token: str) -> InboundAnswer:
    """The answer a confirm page POSTs: verified by its signed link. Raises AnswerRefused with
    the page to show instead (an invalid link, a POST without the confirm, details that are not
    of their type)."""
    approval, choice = _approval_for(request, token)
    form = request.POST
    if form.get("confirm") != "yes":
        raise AnswerRefused(
            problem_page(
                request, 400, "This answer is incomplete", "Use the confirm button on the page to answer."
            )
        )
    try:
        details = _edited_details(approval, choice, form)
    except InvalidInput as exc:
        raise AnswerRefused(_form_again(request, approval, choice, exc.message)) from None
    return InboundAnswer(
        request=approval,
        via=Via.EMAIL,
        choice=choice,
        text=form.get("text", ""),
        note=form.get("note", ""),
        details=details,
        **client_facts(request),
    )


@csrf_exempt  # the signed token in the URL is the credential; no cookie or session to forge
@require_http_methods(["GET", "HEAD", "POST"])
def approval_link(request: HttpRequest, token: str) -> HttpResponse:
    try:
        if request.method == "POST":
            return _answer(request, parse_answer(request, token))
        approval, choice = _approval_for(request, token)
    except AnswerRefused as refused:
        return refused.response
    services.approval_link_viewed(request=approval, choice=choice, **client_facts(request))
    return _closed_page(request, approval, status=200) or _page(
        request, "channels/email/confirm.html", _context(approval, choice)
    )


def _answer(request: HttpRequest, answer: InboundAnswer) -> HttpResponse:
    approval = answer.request
    try:
        answer_record(answer)
    except services.VerificationRequired:
        return _portal_only_page(request, approval)
    except services.SeparationOfDuties as exc:
        return problem_page(request, 403, "Someone else must approve this", exc.message)
    except (services.AlreadyResolved, services.AlreadyAnswered, services.DeadlinePassed):
        return _closed_page(request, approval, status=409) or problem_page(
            request, 409, "Already answered", "This decision can no longer be answered."
        )
    except InvalidInput as exc:
        return _form_again(request, approval, answer.choice, exc.message)
    approval.decision.refresh_from_db()
    return _page(request, "channels/email/done.html", _context(approval, answer.choice))
