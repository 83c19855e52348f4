"""The sign-in email."""

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string


def sign_in_email(*, address: str, token: str) -> EmailMultiAlternatives:
    context = {
        "url": f"{settings.PUBLIC_BASE_URL}/inbox/sign-in/{token}",
        "minutes": settings.PORTAL_SIGN_IN_LINK_MINUTES,
    }
    message = EmailMultiAlternatives(
        subject="Your Countersign sign-in link",
        body=render_to_string("portal/sign_in_email.txt", context),
        to=[address],
    )
    message.attach_alternative(render_to_string("portal/sign_in_email.html", context), "text/html")
    return message
