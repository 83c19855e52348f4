"""Approver addresses: an email, `slack:U123ABC` / `slack:C123ABC` / `slack:#channel`, or
`group:<name>`. Pure parsing: group expansion, which reads the database, is in routing.py."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

_SLACK = re.compile(r"^slack:(?:[UWCG][A-Z0-9]{2,20}|#[a-z0-9][a-z0-9._-]{0,79})$")
_GROUP = re.compile(r"^group:([A-Za-z0-9][A-Za-z0-9_-]{0,63})$")
MAX_ADDRESS_LENGTH = 320


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
