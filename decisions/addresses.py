"""Approver addresses: an email, `slack:U123ABC` / `slack:C123ABC` / `slack:#channel`, or
`group:<name>`. Pure parsing: group expansion, which reads the database, is in routing.py."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

_SLACK_ID = r"slack:(?:[UWCG][A-Z0-9]{2,20}|#[a-z0-9][a-z0-9._-]{0,79})"
_GROUP_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_SLACK = re.compile(rf"^{_SLACK_ID}$")
_GROUP = re.compile(rf"^group:({_GROUP_NAME})$")
MAX_ADDRESS_LENGTH = 320

# What the OpenAPI schema promises an address looks like: the Slack and group forms exactly,
# and emails in the common dot-atom form that Django's validate_email accepts (it accepts a
# few more: quoted names, IP literals, internationalised domains).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = rf"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}}"
ADDRESS_PATTERN = rf"^(?:{_EMAIL}|{_SLACK_ID}|group:{_GROUP_NAME})$"
EMAIL_PATTERN = rf"^{_EMAIL}$"


def parse_address(raw: str) -> tuple[str, str]:
    """('email' | 'slack' | 'group', normalised value). Raises ValueError with a message for
    the approver."""
    value = raw.strip()
    if not value or len(value) > MAX_ADDRESS_LENGTH:
        raise ValueError(f"'{raw[:80]}' is not an approver address.")
    if value.startswith("group:"):
        if not (match := _GROUP.match(value)):
            raise ValueError(f"'{value[:80]}' is not a valid group name (letters, digits, - and _).")
        return "group", match.group(1)
    if value.startswith("slack:"):
        if not _SLACK.match(value):
            raise ValueError(f"'{value[:80]}' is not a Slack address: use slack:U123ABC or slack:#channel.")
        return "slack", value
    try:
        validate_email(value)
    except ValidationError:
        raise ValueError(f"'{value[:80]}' is not an email address, slack:… or group:….") from None
    return "email", value.lower()
