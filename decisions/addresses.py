"""Approver addresses: an email, `slack:U123ABC` / `slack:C123ABC` / `slack:#channel`,
`group:<name>`, or the form of a channel that declares its own prefix (`teams:…`: see
channels.base.Channel.address_prefix). Pure parsing: group expansion, which reads the
database, is in routing.py."""

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


EMAIL_PATTERN = rf"^{_EMAIL}$"  # an email address alone (requested_by)


def address_pattern() -> str:
    """The pattern the OpenAPI schema shows, with each prefixed channel's form (the registry
    imports the channels: call it once Django is set up, not at import)."""
    from channels.registry import prefixed_channels

    forms = [_EMAIL, _SLACK_ID, f"group:{_GROUP_NAME}", *(c.address_pattern for c in prefixed_channels())]
    return rf"^(?:{'|'.join(form for form in forms if form)})$"


def address_description() -> str:
    """The address forms in words, for the OpenAPI schema (call it once Django is set up)."""
    from channels.registry import prefixed_channels

    forms = ["an email address", "slack:U123ABC", "slack:#channel"]
    forms += [c.address_examples for c in prefixed_channels() if c.address_examples]
    return f"{', '.join(forms)} or group:<name> (a group the organization has)"


def _prefixes() -> str:
    from channels.registry import prefixed_channels

    return ", ".join(["slack:…", *(f"{c.address_prefix}…" for c in prefixed_channels())])


def _channel_address(value: str) -> tuple[str, str] | None:
    """(channel name, normalised value) when a registered channel claims the prefix."""
    from channels.registry import prefixed_channels

    for channel in prefixed_channels():
        if value.startswith(channel.address_prefix):
            return channel.name, channel.normalize_address(value)
    return None


def parse_address(raw: str) -> tuple[str, str]:
    """('email' | 'slack' | 'group' | a prefixed channel's name, normalised value). Raises
    ValueError with a message for the approver."""
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
    if found := _channel_address(value):
        return found
    try:
        validate_email(value)
    except ValidationError:
        raise ValueError(f"'{value[:80]}' is not an email address, {_prefixes()} or group:….") from None
    return "email", value.lower()
