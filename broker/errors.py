"""Every error leaves as JSON: {"error": {"code", "message", "fields"}} (docs/API.md).

Domain errors raised by services carry their own status and code; DRF's own errors (parse,
auth, throttle, 404) are mapped here too, and so are Django's, for URLs outside DRF.
"""

import logging

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from rest_framework import exceptions as drf

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """A failure the caller can act on; its status, code and message go out as they are."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, *, fields: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class InvalidInput(DomainError):
    status = 400
    code = "invalid"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class PayloadTooLarge(drf.APIException):
    status_code = 413
    default_code = "payload_too_large"
    default_detail = "Request body is larger than 1 MiB."


def error_response(
    status: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None
) -> JsonResponse:
    body = {"error": {"code": code, "message": message, "fields": fields or {}}}
    return JsonResponse(body, status=status, headers=headers)


def _first_message(detail) -> str:
    """The first human-readable message in a nested DRF error detail."""
    while isinstance(detail, dict | list) and detail:
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    return str(detail)


def _validation_fields(detail) -> dict:
    if isinstance(detail, dict):
        return detail
    return {"non_field_errors": detail if isinstance(detail, list) else [detail]}


def api_exception_handler(exc: Exception, context: dict) -> JsonResponse | None:
    if isinstance(exc, DomainError):
        return error_response(exc.status, exc.code, exc.message, exc.fields)
    if isinstance(exc, Http404 | ObjectDoesNotExist):
        return error_response(404, "not_found", "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return error_response(403, "forbidden", "You do not have permission to do this.")
    if not isinstance(exc, drf.APIException):
        # A database error goes on to DatabaseUnavailableMiddleware (a 503, for every view
        # alike); anything else is a bug: Django logs it and handler500 answers in JSON.
        return None

    headers = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    if isinstance(exc, drf.Throttled):
        wait = exc.wait  # type: ignore[attr-defined]  # set by Throttled.__init__; not in the stubs
        headers["Retry-After"] = str(int(wait or 1))
        return error_response(
            429,
            "rate_limited",
            f"Too many requests; retry in {int(wait or 1)} s.",
            headers=headers,
        )
    if isinstance(exc, drf.ValidationError):
        fields = _validation_fields(exc.detail)
        return error_response(400, "invalid", _first_message(exc.detail), fields, headers)
    code = exc.get_codes()
    code = code if isinstance(code, str) else "error"
    return error_response(exc.status_code, code, _first_message(exc.detail), headers=headers)


# Approvers reach /a/… from an email, in a browser: they get a page, not JSON.
HTML_PATH_PREFIXES = ("/a/",)


def _page(request, template: str, context: dict, status: int, headers: dict | None = None) -> HttpResponse:
    response = render(request, template, context, status=status)
    # An approval page's URL is a credential: never leak it in a Referer, never cache the page.
    for name, value in {
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        **(headers or {}),
    }.items():
        response[name] = value
    return response


def error_for(request, status: int, code: str, message: str, title: str = "") -> HttpResponse:
    if request.path.startswith(HTML_PATH_PREFIXES):
        context = {"title": title or message, "message": "" if not title else message}
        return _page(request, "approvals/problem.html", context, status)
    return error_response(status, code, message)


DATABASE_ERRORS = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5


def _resubmittable_form(request) -> list[tuple[str, str]]:
    """The fields of a form POST, to send again as they were; none if the body is unreadable."""
    if request.method != "POST":
        return []
    try:
        return [(name, value) for name, values in request.POST.lists() for value in values]
    except Exception:  # too large, too many fields, a broken upload: the page simply has no form
        return []


def database_unavailable(request, exc: Exception) -> HttpResponse:
    """503 with Retry-After for a request the database failed: gone mid-request, restarting,
    refusing connections. Services run in transactions, so whatever the request began was
    rolled back, and the same request may simply be sent again. An approver who was confirming
    gets a page that says so, with a button that sends the same answer again."""
    logger.warning("database unavailable: %s", exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if request.path.startswith(HTML_PATH_PREFIXES):
        context = {"resend": _resubmittable_form(request), "retry_after": RETRY_AFTER_SECONDS}
        return _page(request, "approvals/unavailable.html", context, 503, headers)
    return error_response(503, "unavailable", "The database is unavailable; retry shortly.", headers=headers)


def json_bad_request(request, exception=None) -> HttpResponse:
    return error_for(request, 400, "bad_request", "Bad request.")


def json_permission_denied(request, exception=None) -> HttpResponse:
    return error_for(request, 403, "forbidden", "You do not have permission to do this.")


# Pages for people, where a 404 stays a page: the admin and the development outbox.
HTML_AREAS = ("/admin/", "/dev/")


def json_not_found(request, exception=None) -> HttpResponse:
    """An unknown URL names itself and where the API is described; a known one whose object
    does not exist (a view's Http404) says so the same way."""
    shown = request.path if len(request.path) <= 200 else request.path[:200] + "…"
    return error_for(
        request, 404, "not_found", f"Nothing at {request.method} {shown}. The API is described at /docs."
    )


def debug_page_for_api_path(request, response) -> bool:
    return (
        response.status_code == 404
        and response.get("Content-Type", "").startswith("text/html")
        and not request.path.startswith(HTML_AREAS + HTML_PATH_PREFIXES)
    )


def json_server_error(request) -> HttpResponse:
    return error_for(request, 500, "internal_error", "Something went wrong on our side.")
