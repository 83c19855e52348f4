"""Email sender: Django's mail layer, so SMTP (EMAIL_URL) or any django-anymail provider
works by settings alone."""

import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from notifications.models import Delivery
from notifications.senders import PermanentFailure, register


@register(Delivery.Kind.EMAIL)
def send_email(delivery: Delivery) -> None:
    decision, request = delivery.decision, delivery.request
    context = {
        "decision": decision,
        "request": request,
        "organization": delivery.organization,
        "public_base_url": settings.PUBLIC_BASE_URL,
    }
    subject = f"Approval needed: {decision.action}"
    # Header injection: a subject must be one line.
    subject = " ".join(subject.split())[:200]
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("notifications/ask_email.txt", context),
        to=[request.address],
    )
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentFailure(f"recipient refused: {exc.recipients}") from exc
