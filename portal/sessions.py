"""The approver's portal session: the address a magic link proved, and the epoch it was
opened under (sign-out everywhere moves the epoch on)."""

from datetime import datetime, timedelta

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from decisions.models import Verification
from portal.models import Approver
from portal.selectors import session_epoch

ADDRESS = "portal_address"
EPOCH = "portal_epoch"
SIGNED_IN_AT = "portal_signed_in_at"


def session_begin(request: HttpRequest, approver: Approver) -> None:
    # A new session key: whatever key the browser held before (maybe planted) is worthless.
    request.session.cycle_key()
    request.session[ADDRESS] = approver.address
    request.session[EPOCH] = approver.session_epoch
    request.session[SIGNED_IN_AT] = timezone.now().isoformat()


def session_end(request: HttpRequest) -> None:
    request.session.flush()


def session_verified(request: HttpRequest) -> str:
    """What this session proves at an answer: `session` when its magic link was used within
    PORTAL_FRESH_SIGN_IN_MINUTES, else no more than an emailed link does."""
    try:
        signed_in_at = datetime.fromisoformat(request.session.get(SIGNED_IN_AT, ""))
    except ValueError:
        return Verification.LINK
    fresh = timezone.now() - signed_in_at <= timedelta(minutes=settings.PORTAL_FRESH_SIGN_IN_MINUTES)
    return Verification.SESSION if fresh else Verification.LINK


def signed_in_address(request: HttpRequest) -> str | None:
    """The signed-in approver's address, or None (and the session ended) if it was signed out
    everywhere since."""
    address = request.session.get(ADDRESS)
    if not address:
        return None
    if session_epoch(address) != request.session.get(EPOCH):
        session_end(request)
        return None
    return address
