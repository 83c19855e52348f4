import smtplib

from celery import shared_task

from portal.emails import sign_in_email
from portal.services import sign_in_link_issue


@shared_task(
    name="portal.send_sign_in_link",
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=True,
    max_retries=3,
)
def send_sign_in_link(address: str, next_path: str = "") -> bool:
    """Email a sign-in link if the address was ever asked for sign-off; otherwise nothing.
    Run by the worker, so the sign-in form answers in the same time for every address."""
    token = sign_in_link_issue(address=address, next_path=next_path)
    if token is None:
        return False
    sign_in_email(address=address, token=token).send()
    return True
