"""Email sender: Django's mail layer, so SMTP (EMAIL_URL) or any django-anymail provider
works by settings alone."""

import smtplib
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from decisions.display import BUTTON_COLOURS, OTHER_BUTTON_COLOUR, deadline_phrase, detail_rows, option_label
from decisions.links import TEXT_ANSWER, link_url, portal_url
from decisions.models import ResponseType, Verification
from notifications.models import Delivery
from notifications.senders import PermanentFailure, register

URGENCY_COLOURS = {"low": "#6b7280", "normal": "#374151", "high": "#b45309", "critical": "#b91c1c"}


def _buttons(delivery: Delivery) -> list[dict]:
    decision, request = delivery.decision, delivery.request
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


def approval_email(delivery: Delivery) -> EmailMultiAlternatives:
    """The message asking one approver, with one link per option (in both parts)."""
    decision = delivery.decision
    prefix = "[Critical] " if decision.urgency == "critical" else ""
    if delivery.purpose == Delivery.Purpose.REMIND:
        prefix += "Reminder: "
    # One line, whatever the action holds: a subject with a newline would be header injection.
    subject = " ".join(f"{prefix}Approval needed: {decision.action}".split())[:200]
    context = {
        "subject": subject,
        "decision": decision,
        "organization": delivery.organization,
        "details": detail_rows(decision.details),
        "deadline": deadline_phrase(decision.expires_at),
        "buttons": _buttons(delivery),
        "urgency_colour": URGENCY_COLOURS[decision.urgency],
        "is_reminder": delivery.purpose == Delivery.Purpose.REMIND,
    }
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("notifications/ask_email.txt", context),
        to=[delivery.request.address],
        headers={
            "X-Countersign-Decision": decision.id,
            # The same Message-ID on every attempt: a copy re-sent after a worker crash is
            # recognisably the same message, as webhook-id is for callbacks.
            "Message-ID": f"<{decision.id}.{delivery.pk}@{urlsplit(settings.PUBLIC_BASE_URL).hostname}>",
        },
    )
    message.attach_alternative(render_to_string("notifications/ask_email.html", context), "text/html")
    return message


@register(Delivery.Kind.EMAIL)
def send_email(delivery: Delivery) -> None:
    message = approval_email(delivery)
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentFailure(f"recipient refused: {', '.join(exc.recipients)}") from exc
    # django-anymail reports the provider's message id; tracking webhooks refer to it.
    if status := getattr(message, "anymail_status", None):
        message_id = "" if status.message_id is None else str(status.message_id)
        Delivery.objects.filter(pk=delivery.pk).update(provider_message_id=message_id)
