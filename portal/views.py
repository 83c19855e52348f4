"""The approver portal at /inbox: server-rendered pages, signed in by a magic link.

Thin views: read the form, call a service or selector, render. Every page is private to the
signed-in approver (no-store, no Referer, not indexed), and every decision read or answered is
found through that approver's own requests.
"""

import json
import logging
import math
from datetime import datetime
from functools import wraps
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from broker.errors import Conflict, InvalidInput, NotFound
from channels.answers import answer_record
from channels.base import AnswerRefused, client_facts
from decisions import services as decision_services
from decisions.display import BUTTON_COLOURS, OTHER_BUTTON_COLOUR, detail_rows, option_label
from decisions.models import ResponseType, Verification
from portal import pages, passkeys, selectors, services
from portal.channel import ANSWER_CHALLENGE, WebChannel
from portal.models import Approver, Delegation
from portal.rate_limits import sign_in_wait
from portal.sessions import session_begin, session_end, session_verified, signed_in_address
from portal.tasks import send_sign_in_link

logger = logging.getLogger(__name__)
CHANNEL = WebChannel()  # answers given here are the web channel's (portal/channel.py)
MAX_ADDRESS_LENGTH = 320


_page = pages.page
_problem = pages.problem


def approver_required(view):
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        address = signed_in_address(request)
        if address is None:
            if request.method == "GET":
                return redirect("portal-inbox")
            return _problem(request, 403, "Please sign in", "Your session has ended. Sign in again.")
        request.approver = address
        return view(request, *args, **kwargs)

    return wrapper


# --- sign-in ------------------------------------------------------------------------------


def _sign_in_form(request: HttpRequest, *, address: str = "", error: str = "", status: int = 200):
    return _page(request, "portal/sign_in.html", {"address": address, "error": error}, status=status)


@require_http_methods(["GET", "HEAD"])
def inbox(request: HttpRequest) -> HttpResponse:
    address = signed_in_address(request)
    if address is None:
        return _sign_in_form(request)
    request.approver = address
    search = request.GET.get("q", "").strip()[: selectors.MAX_SEARCH_LENGTH]
    rows = selectors.inbox_pending(address=address, search=search)
    return _page(request, "portal/inbox.html", {"rows": _with_display(rows), "q": search, "tab": "pending"})


# No CSRF token: this form only has a link emailed (rate-limited) to the address typed, which
# anyone may ask for; without a token, opening /inbox from an email sets no cookie, as scanners do.
@csrf_exempt
@require_POST
def sign_in_request(request: HttpRequest) -> HttpResponse:
    address = services.normalize_address(request.POST.get("address", ""))
    try:
        if len(address) > MAX_ADDRESS_LENGTH:
            raise ValidationError("too long")
        validate_email(address)
    except ValidationError:
        return _sign_in_form(
            request,
            address=address[:MAX_ADDRESS_LENGTH],
            error="Enter your email address, such as alice@example.com.",
            status=400,
        )
    wait = sign_in_wait(address=address, ip=client_facts(request)["ip"])
    if wait is not None:
        minutes = max(1, math.ceil(wait / 60))
        response = _problem(
            request,
            429,
            "Too many sign-in requests",
            f"Please wait {minutes} minute{'s' * (minutes != 1)} before asking for another link.",
        )
        response["Retry-After"] = str(math.ceil(wait))
        return response
    try:
        # The worker decides whether the address gets a link: this page is the same either way.
        send_sign_in_link.delay(address, services.safe_next_path(request.POST.get("next", "")))
    except Exception:
        logger.exception("could not queue a sign-in email")
        return _problem(
            request, 503, "Please try again", "We could not send the email just now. Try again shortly."
        )
    return _page(request, "portal/sign_in_sent.html", {"address": address})


@require_http_methods(["GET", "HEAD", "POST"])
def sign_in_link(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a Sign in button and changes nothing (mail scanners fetch links); the POST
    uses the link, once."""
    try:
        if request.method != "POST":
            services.sign_in_link_find(token=token)
            return _page(request, "portal/sign_in_confirm.html", {})
        approver, next_path = services.sign_in_link_redeem(token=token)
    except services.BadSignInLink:
        return _problem(
            request,
            404,
            "This sign-in link is not valid",
            "Sign-in links work once, for 15 minutes. Ask for a new one.",
        )
    session_begin(request, approver)
    return redirect(next_path or "portal-inbox")


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    session_end(request)
    return redirect("portal-inbox")


@require_POST
@approver_required
def sign_out_everywhere(request: HttpRequest) -> HttpResponse:
    services.approver_sign_out_everywhere(address=request.approver)
    session_end(request)
    return redirect("portal-inbox")


# --- the inbox ----------------------------------------------------------------------------


def _with_display(rows: list[selectors.InboxRow]) -> list[dict]:
    return [
        {
            "row": row,
            "details": detail_rows(row.decision.details)[:3],
        }
        for row in rows
    ]


def _page_number(raw: str) -> int:
    return int(raw) if raw.isdigit() and 0 < len(raw) < 7 else 1


@require_http_methods(["GET", "HEAD"])
@approver_required
def history(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()[: selectors.MAX_SEARCH_LENGTH]
    page, rows = selectors.inbox_history(
        address=request.approver, search=search, page=_page_number(request.GET.get("page", ""))
    )
    return _page(
        request,
        "portal/history.html",
        {"rows": _with_display(rows), "page": page, "q": search, "tab": "history"},
    )


def _decision_context(request: HttpRequest, decision, my_request, agent: str, **extra) -> dict:
    options = [] if decision.response_type == ResponseType.TEXT else decision.options
    return {
        "decision": decision,
        "my_request": my_request,
        "agent": agent,
        "organization": decision.organization,
        "details": detail_rows(decision.details),
        "is_text": decision.response_type == ResponseType.TEXT,
        "needs_fresh_sign_in": decision.verification == Verification.SESSION
        and session_verified(request) != Verification.SESSION,
        "needs_passkey": decision.verification == Verification.PASSKEY,
        "can_answer": decision.is_pending and my_request.state == my_request.State.PENDING,
        "buttons": [
            {"choice": o, "label": option_label(o), "colour": BUTTON_COLOURS.get(o, OTHER_BUTTON_COLOUR)}
            for o in options
        ],
        # Only the outcome's status and time: who else answered, and what, is not this approver's.
        "outcome": decision.outcome,
        **extra,
    }


@require_http_methods(["GET", "HEAD"])
@approver_required
def decision_page(request: HttpRequest, decision_id: str) -> HttpResponse:
    try:
        decision, my_request, agent = selectors.inbox_decision(
            address=request.approver, decision_id=decision_id
        )
    except NotFound as exc:
        return _problem(request, 404, "Not found", exc.message)
    return _page(request, "portal/decision.html", _decision_context(request, decision, my_request, agent))


@require_POST
@approver_required
def answer(request: HttpRequest, decision_id: str) -> HttpResponse:
    form = request.POST
    try:
        decision = answer_record(CHANNEL.parse_answer(request, decision_id=decision_id))
    except AnswerRefused as refused:
        return refused.response
    except NotFound as exc:
        return _problem(request, 404, "Not found", exc.message)
    except Conflict as exc:
        return _problem(request, 409, "Already answered", exc.message)
    except (
        InvalidInput,
        decision_services.VerificationRequired,
        decision_services.SeparationOfDuties,
    ) as exc:
        status = 400 if isinstance(exc, InvalidInput) else 403
        decision, my_request, agent = selectors.inbox_decision(
            address=request.approver, decision_id=decision_id
        )
        context = _decision_context(
            request,
            decision,
            my_request,
            agent,
            error=exc.message,
            note=form.get("note", "")[: decision_services.MAX_NOTE_LENGTH],
            text=form.get("text", "")[: decision_services.MAX_TEXT_LENGTH],
        )
        return _page(request, "portal/decision.html", context, status=status)
    answered = form.get("choice") or "answered"
    messages.success(request, f"{option_label(answered)}: {decision.action}")
    return redirect("portal-inbox")


@require_POST
@approver_required
def bulk_answer(request: HttpRequest) -> HttpResponse:
    try:
        results = services.answers_record_each(CHANNEL.parse_bulk_answer(request))
    except AnswerRefused as refused:
        return refused.response
    except InvalidInput as exc:
        rows = selectors.inbox_pending(address=request.approver)
        context = {"rows": _with_display(rows), "tab": "pending", "error": exc.message}
        return _page(request, "portal/inbox.html", context, status=400)
    done = [r for r in results if r.ok]
    verb = "Approved" if request.POST["choice"] == "approve" else "Denied"
    if done:
        messages.success(request, f"{verb} {len(done)} decision{'s' * (len(done) != 1)}.")
    for failed in (r for r in results if not r.ok):
        messages.error(request, f"{failed.decision_id}: {failed.message}")
    return redirect("portal-inbox")


# --- passkeys ------------------------------------------------------------------------------

REGISTRATION_CHALLENGE = "portal_passkey_registration"


def _json_error(status: int, code: str, message: str, fields: dict | None = None) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "fields": fields or {}}}, status=status)


def _approver(request: HttpRequest) -> Approver:
    return Approver.objects.get(address=request.approver)


@require_http_methods(["GET", "HEAD"])
@approver_required
def passkeys_page(request: HttpRequest) -> HttpResponse:
    approver = _approver(request)
    context = {
        "passkeys": approver.passkeys.order_by("created_at"),
        "fresh": session_verified(request) == Verification.SESSION,
        "tab": "passkeys",
    }
    return _page(request, "portal/passkeys.html", context)


@require_POST
@approver_required
def passkey_registration_options(request: HttpRequest) -> HttpResponse:
    # Adding a passkey is what a stolen, old session would want most: it needs a fresh sign-in.
    if session_verified(request) != Verification.SESSION:
        return _json_error(403, "fresh_sign_in_required", "Sign in again with a fresh link to add a passkey.")
    options, challenge = passkeys.registration_options(approver=_approver(request))
    request.session[REGISTRATION_CHALLENGE] = bytes_to_base64url(challenge)
    return HttpResponse(options, content_type="application/json")


@require_POST
@approver_required
def passkey_register(request: HttpRequest) -> HttpResponse:
    challenge = request.session.pop(REGISTRATION_CHALLENGE, None)
    if challenge is None or session_verified(request) != Verification.SESSION:
        return _json_error(400, "no_ceremony", "Start again: use the 'Add a passkey' button.")
    try:
        body = json.loads(request.body)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return _json_error(400, "invalid", "Send {name, credential} as JSON.", {"name": ["required"]})
    try:
        passkey = passkeys.passkey_register(
            approver=_approver(request),
            name=body["name"],
            credential=json.dumps(body.get("credential")),
            challenge=base64url_to_bytes(challenge),
        )
    except InvalidInput as exc:
        return _json_error(400, exc.code, exc.message, exc.fields)
    messages.success(request, f"Passkey added: {passkey.name}")
    return JsonResponse({"id": passkey.pk, "name": passkey.name}, status=201)


@require_POST
@approver_required
def passkey_delete(request: HttpRequest, passkey_id: int) -> HttpResponse:
    try:
        passkeys.passkey_delete(approver=_approver(request), passkey_id=passkey_id)
    except NotFound as exc:
        return _problem(request, 404, "Not found", exc.message)
    messages.success(request, "Passkey removed.")
    return redirect("portal-passkeys")


@require_POST
@approver_required
def passkey_answer_options(request: HttpRequest, decision_id: str) -> HttpResponse:
    """The challenge for answering one decision with a passkey, bound to that decision."""
    try:
        selectors.inbox_decision(address=request.approver, decision_id=decision_id)
        options, challenge = passkeys.authentication_options(approver=_approver(request))
    except NotFound as exc:
        return _json_error(404, exc.code, exc.message)
    except InvalidInput as exc:
        return _json_error(400, exc.code, exc.message, exc.fields)
    request.session[ANSWER_CHALLENGE] = {"decision": decision_id, "challenge": bytes_to_base64url(challenge)}
    return HttpResponse(options, content_type="application/json")


# --- away: delegation ---------------------------------------------------------------------


def _until(raw: str, zone: str) -> datetime:
    """A datetime-local value, in the viewer's time zone (sent by the page's script)."""
    try:
        tz = ZoneInfo(zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"Unknown time zone {zone[:64]!r}.", fields={"tz": ["a time zone"]}) from None
    try:
        naive = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(
            "Enter the date and time you are back.", fields={"until": ["a date and time"]}
        ) from None
    return naive.replace(tzinfo=tz) if naive.tzinfo is None else naive


def _away_page(request: HttpRequest, *, status: int = 200, **extra) -> HttpResponse:
    context = {
        "delegation": Delegation.objects.filter(address=request.approver).first(),
        "delegating_to_me": Delegation.objects.filter(delegate=request.approver, until__gt=timezone.now()),
        "tab": "away",
        **extra,
    }
    return _page(request, "portal/away.html", context, status=status)


@require_http_methods(["GET", "HEAD", "POST"])
@approver_required
def away(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _away_page(request)
    form = request.POST
    if form.get("back") == "yes":
        services.delegation_clear(address=request.approver, set_by=request.approver)
        messages.success(request, "Welcome back: new requests come to you again.")
        return redirect("portal-away")
    try:
        services.delegation_set(
            address=request.approver,
            delegate=form.get("delegate", ""),
            until=_until(form.get("until", ""), form.get("tz", "")),
            set_by=request.approver,
        )
    except InvalidInput as exc:
        return _away_page(request, status=400, error=exc.message, form=form)
    messages.success(request, "Saved: new requests go to your delegate while you are away.")
    return redirect("portal-away")
