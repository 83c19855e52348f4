"""The shape of a channel: how one approval request reaches a person and how their answer
comes back.

A channel renders three messages for one ApprovalRequest — the ask, a reminder, the outcome
update — and sends them, returning SentFacts instead of writing rows: the outbox hands the facts
to decisions, which stores them in the same transaction that marks the delivery sent (and the
request notified). Its inbound half (an HTTP endpoint, listed in `urls`) parses and verifies an
answer into an InboundAnswer and records it with channels.answers.answer_record.

To add a channel: a folder channels/<name>/ with a Channel subclass and, if answers arrive over
HTTP, a urls.py; then one line in channels.registry.CHANNELS. Nothing else imports it. (The web
channel is the one exception to the folder: it is the approver portal, an app of its own, whose
portal/channel.py is registered the same way.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

# A send raises these (from the outbox) to fail for good or to be retried; any other exception
# is retried with backoff too. `report=AttemptReport(...)` keeps what the remote end answered.
from notifications.senders import AttemptReport, PermanentFailure, RetryLater

__all__ = [
    "AnswerRefused",
    "AttemptReport",
    "Channel",
    "InboundAnswer",
    "MessageRef",
    "PermanentFailure",
    "RetryLater",
    "SentFacts",
    "client_facts",
]

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from decisions.models import ApprovalRequest


@dataclass(frozen=True)
class MessageRef:
    """Where a posted message lives, so a reminder can reply in its thread and the outcome
    update can edit it (stored on the ApprovalRequest's slack_channel/slack_ts/slack_user)."""

    conversation: str  # Slack channel or DM id; a Teams conversation id
    message: str  # Slack ts; a Teams activity id
    recipient: str = ""  # the platform user the request belongs to; "" where anyone present may answer


@dataclass(frozen=True)
class SentFacts:
    """What one send learned. Nothing here is written by the channel; decisions persists it."""

    message_ref: MessageRef | None = None  # set by an ask that posted a message to be edited later
    provider_message_id: str = ""  # the provider's id for the message (email tracking webhooks)
    status_code: int | None = None  # what the remote end answered, for the attempt log
    response_snippet: str = ""


@dataclass(frozen=True)
class InboundAnswer:
    """One approver's answer, parsed and verified by the channel it came through."""

    request: ApprovalRequest
    via: str  # a decisions.models.Via value
    choice: str = ""  # one of the decision's options ("" for a text response)
    text: str = ""  # a text response's answer
    note: str = ""
    details: dict | None = None  # the details as the approver edited them (None: unchanged)
    answered_by: str = ""  # who answered, when not the approver asked (someone in a Slack channel)
    answered_by_name: str = ""
    ip: str = ""
    user_agent: str = ""
    # How the channel proved who answers (a decisions.models.Verification value): "link" for a
    # signed link or button; the portal's session or passkey prove more.
    verified: str = "link"
    reply_to: Any = None  # what the channel needs to tell the person how it went (Slack: the payload)


class AnswerRefused(Exception):
    """parse_answer found no answer to record (a bad signature, a form to show, a button that
    opens one): `response` is what the endpoint answers instead."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def client_facts(http_request: HttpRequest) -> dict:
    """Where an answer came from, as the audit trail records it (an InboundAnswer's ip and
    user_agent)."""
    return {
        "ip": http_request.META.get("REMOTE_ADDR", ""),
        "user_agent": http_request.META.get("HTTP_USER_AGENT", "")[:500],
    }


class Channel(ABC):
    """One way of reaching approvers. Instances are stateless; the registry holds one each."""

    name: ClassVar[str]  # the registry key, ApprovalRequest.channel and Delivery.kind
    via: ClassVar[str]  # the Via recorded on answers that come through it
    urls: ClassVar[str | None] = None  # dotted module whose urlpatterns the root URLconf includes
    edits_outcome: ClassVar[bool] = False  # True: an update delivery is queued when the decision settles
    # False: the channel sends nothing (the portal shows the ask in the approver's inbox), so the
    # outbox is never given a delivery of its kind (channels.registry.silent_names).
    sends: ClassVar[bool] = True
    # Approvers addressed as "<prefix>…" (e.g. "teams:") are this channel's; decisions.addresses
    # asks normalize_address to check one, and the OpenAPI schema shows address_pattern.
    address_prefix: ClassVar[str] = ""
    address_pattern: ClassVar[str] = ""  # the whole address as a regular expression, without ^ and $
    address_examples: ClassVar[str] = ""  # its forms, for people: "teams:29:<user id>, …"

    def asks_email_approvers(self, organization_id: int) -> bool:
        """Whether this organization has the channel ask approvers named by email as well (Slack's
        dm_email_approvers): decisions.routing then asks each on this channel too."""
        return False

    def normalize_address(self, value: str) -> str:
        """The address as stored (`value` starts with address_prefix). Raises ValueError with a
        message for whoever wrote it."""
        raise ValueError(f"'{value[:80]}' is not an address {self.name} knows.")

    @abstractmethod
    def render_ask(self, request: ApprovalRequest, *, key: str) -> Any:
        """The message asking this approver, with a way to answer each option. `key` is the
        same on every retry of one delivery (an email's Message-ID is built from it)."""

    @abstractmethod
    def render_reminder(self, request: ApprovalRequest, *, key: str) -> Any:
        """The reminder for an approver who has not answered yet."""

    def render_outcome(self, request: ApprovalRequest, *, key: str) -> Any | None:
        """The ask's message as it should read once the decision is settled; None when there
        is nothing to update (the channel cannot edit what it sent, or nothing was posted)."""
        return None

    @abstractmethod
    def send(self, request: ApprovalRequest, message: Any) -> SentFacts:
        """Send what a render_* method returned. Raises PermanentFailure or RetryLater (or
        anything else, retried with backoff); never writes to the database."""

    def parse_answer(self, http_request: HttpRequest, **url_kwargs: str) -> InboundAnswer:
        """Verify an inbound HTTP request (a signature, a signed token; `url_kwargs` are what its
        URL pattern captured) and read the answer it carries, or raise AnswerRefused. Record it
        with channels.answers.answer_record. Channels whose answers arrive elsewhere need not
        implement it."""
        raise NotImplementedError(f"{self.name} receives no answers over HTTP")

    def deliver(self, request: ApprovalRequest, *, purpose: str, key: str) -> SentFacts:
        """Render the message for an outbox purpose ("ask", "remind", "update") and send it."""
        if not self.sends:
            raise PermanentFailure(f"{self.name} sends nothing: its approvers find the ask themselves")
        render = {"ask": self.render_ask, "remind": self.render_reminder, "update": self.render_outcome}
        if purpose not in render:
            raise PermanentFailure(f"{self.name} has no message for purpose {purpose}")
        message = render[purpose](request, key=key)
        if message is None:
            return SentFacts(response_snippet="nothing to update")
        return self.send(request, message)
