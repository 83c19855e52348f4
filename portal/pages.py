"""How every portal page is answered: private to the signed-in approver (no-store, no Referer
to other sites, not indexed). Shared by the views and the web channel's refusals."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def page(request: HttpRequest, template: str, context: dict, *, status: int = 200) -> HttpResponse:
    response = render(request, template, {"me": getattr(request, "approver", None), **context}, status=status)
    # A sign-in URL is a credential: never sent to another site. (Not no-referrer: Chromium then
    # sends `Origin: null` with the page's own forms, which CSRF protection rightly refuses.)
    response["Referrer-Policy"] = "same-origin"
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def problem(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    return page(request, "portal/problem.html", {"title": title, "message": message}, status=status)
