"""Email: Django's mail layer, so SMTP (EMAIL_URL) or any django-anymail provider works by
settings alone. Each option is a signed link to the confirm pages (pages.py), which are this
channel's inbound half; an email cannot be edited, so there is no outcome update."""

import smtplib
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.http import HttpRequest
from django.template.loader import render_to_string

from channels.base import Channel, InboundAnswer, PermanentFailure, SentFacts
from channels.email import (
    pages,
    tracking,  # noqa: F401  (connects the providers' tracking webhooks)
)
from decisions.display import BUTTON_COLOURS, OTHER_BUTTON_COLOUR, deadline_phrase, detail_rows, option_label
from decisions.links import TEXT_ANSWER, inbox_url, link_url, portal_url
from decisions.models import ApprovalRequest, ResponseType, Verification, Via
from notifications.models import Delivery

URGENCY_COLOURS = {"low": "#6b7280", "normal": "#374151", "high": "#b45309", "critical": "#b91c1c"}


def _buttons(request: ApprovalRequest) -> list[dict]:
    decision = request.decision
    if decision.verification != Verification.LINK:
        # Answered only in the portal, signed in: one button that leads there.
        return [
            {"label": "Open in Countersign", "url": portal_url(decision.id), "colour": OTHER_BUTTON_COLOUR}
        ]
    if decision.response_type == ResponseType.TEXT:
        return [{"label": "Answer", "url": link_url(request, TEXT_ANSWER), "colour": OTHER_BUTTON_COLOUR}]
    return [
        {
            "label": option_label(option),
            "url": link_url(request, option),
            "colour": BUTTON_COLOURS.get(option, OTHER_BUTTON_COLOUR),
        }
        for option in decision.options
    ]


def render_email(request: ApprovalRequest, *, key: str, reminder: bool) -> EmailMultiAlternatives:
    """The message asking one approver, with one link per option (in both parts)."""
    decision = request.decision
    prefix = "[Critical] " if decision.urgency == "critical" else ""
    if reminder:
        prefix += "Reminder: "
    # One line, whatever the action holds: a subject with a newline would be header injection.
    subject = " ".join(f"{prefix}Approval needed: {decision.action}".split())[:200]
    context = {
        "subject": subject,
        "decision": decision,
        "organization": decision.organization,
        "details": detail_rows(decision.details),
        "deadline": deadline_phrase(decision.expires_at),
        "buttons": _buttons(request),
        "inbox_url": inbox_url(),
        "urgency_colour": URGENCY_COLOURS[decision.urgency],
        "is_reminder": reminder,
    }
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("channels/email/ask_email.txt", context),
        to=[request.address],
        headers={
            "X-Countersign-Decision": decision.id,
            # The same Message-ID on every attempt: a copy re-sent after a worker crash is
            # recognisably the same message, as webhook-id is for callbacks.
            "Message-ID": f"<{decision.id}.{key}@{urlsplit(settings.PUBLIC_BASE_URL).hostname}>",
        },
    )
    message.attach_alternative(render_to_string("channels/email/ask_email.html", context), "text/html")
    return message


def approval_email(delivery: Delivery) -> EmailMultiAlternatives:
    """The email an ask or remind delivery sends."""
    return render_email(
        delivery.request, key=str(delivery.pk), reminder=delivery.purpose == Delivery.Purpose.REMIND
    )


class EmailChannel(Channel):
    name = "email"
    via = Via.EMAIL
    urls = "channels.email.urls"

    def render_ask(self, request: ApprovalRequest, *, key: str) -> EmailMultiAlternatives:
        return render_email(request, key=key, reminder=False)

    def render_reminder(self, request: ApprovalRequest, *, key: str) -> EmailMultiAlternatives:
        return render_email(request, key=key, reminder=True)

    def parse_answer(self, http_request: HttpRequest, **url_kwargs: str) -> InboundAnswer:
        return pages.parse_answer(http_request, url_kwargs["token"])

    def send(self, request: ApprovalRequest, message: EmailMultiAlternatives) -> SentFacts:
        try:
            message.send()
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentFailure(f"recipient refused: {', '.join(exc.recipients)}") from exc
        # django-anymail reports the provider's message id; tracking webhooks refer to it.
        status = getattr(message, "anymail_status", None)
        message_id = "" if status is None or status.message_id is None else str(status.message_id)
        return SentFacts(provider_message_id=message_id)
