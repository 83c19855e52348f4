"""One-click links: /a/<token>.

A token is signed with SECRET_KEY (Django's signing) and names one approval request, its
decision and one choice. It carries no expiry of its own: it is honoured only while the
decision is pending and before its deadline, and only until that approver has answered,
so it expires with the decision and works once.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core import signing

from decisions.models import ApprovalRequest

_SALT = "countersign.approval-link.v1"
TEXT_ANSWER = ""  # the choice carried by the single link of a text-response decision


class BadLink(Exception):
    """The token is forged, truncated or malformed."""


@dataclass(frozen=True)
class LinkClaim:
    request_id: int
    decision_id: str
    choice: str


def link_token(request: ApprovalRequest, choice: str) -> str:
    return signing.dumps({"r": request.pk, "d": request.decision_id, "c": choice}, salt=_SALT, compress=True)


def link_url(request: ApprovalRequest, choice: str) -> str:
    return f"{settings.PUBLIC_BASE_URL}/a/{link_token(request, choice)}"


def read_link(token: str) -> LinkClaim:
    """The claim a token makes. Raises BadLink unless the signature holds and the shape is ours."""
    try:
        data = signing.loads(token, salt=_SALT)
    except (signing.BadSignature, ValueError, UnicodeError):
        raise BadLink from None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("r"), int)
        and isinstance(data.get("d"), str)
        and isinstance(data.get("c"), str)
    ):
        raise BadLink
    return LinkClaim(request_id=data["r"], decision_id=data["d"], choice=data["c"])


def inbox_url() -> str:
    """The approver portal's inbox: everything waiting for whoever signs in (in every email)."""
    return f"{settings.PUBLIC_BASE_URL}/inbox"


def portal_url(decision_id: str) -> str:
    """The decision's page in the approver portal, where a decision whose `verification` is
    session or passkey is answered (its email and Slack buttons lead there instead)."""
    return f"{settings.PUBLIC_BASE_URL}/inbox/{decision_id}"


_REQUEST_SALT = "countersign.slack-request.v1"


def request_token(request: ApprovalRequest) -> str:
    """A signed reference to one request, carried by its Slack buttons and modal: the choice
    comes from the button pressed and is checked against the options by decision_answer."""
    return signing.dumps({"r": request.pk, "d": request.decision_id}, salt=_REQUEST_SALT)


def read_request_token(token: str) -> tuple[int, str]:
    """(request id, decision id). Raises BadLink for anything we did not sign."""
    try:
        data = signing.loads(token, salt=_REQUEST_SALT)
    except (signing.BadSignature, ValueError, UnicodeError):
        raise BadLink from None
    if not (isinstance(data, dict) and isinstance(data.get("r"), int) and isinstance(data.get("d"), str)):
        raise BadLink
    return data["r"], data["d"]
