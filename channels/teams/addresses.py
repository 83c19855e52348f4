"""Teams approver addresses.

- `teams:29:1AbC…` — a person, by their Teams user id; asked in their 1:1 chat with the bot.
- `teams:00000000-0000-0000-0000-000000000000` — a person, by their Microsoft Entra object id.
- `teams:19:…@thread.tacv2` (a channel) or `teams:19:…@thread.v2` (a group chat) — a
  conversation the bot is in; anyone in it may answer, and the answer records who did.
"""

import re

PREFIX = "teams:"
_USER_ID = r"29:[A-Za-z0-9_-]{1,200}"
_OBJECT_ID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_CONVERSATION = r"19:[A-Za-z0-9_.@-]{1,200}"
# The whole address, for the OpenAPI schema's pattern.
ADDRESS_PATTERN = rf"teams:(?:{_USER_ID}|{_OBJECT_ID}|{_CONVERSATION})"
_PERSON = re.compile(rf"^teams:({_USER_ID}|{_OBJECT_ID})$")
_CONVERSATION_ADDRESS = re.compile(rf"^teams:({_CONVERSATION})$")


def parse_teams_address(address: str) -> tuple[str, str]:
    """('person' | 'conversation', the id). Raises ValueError with a message for the caller."""
    if match := _PERSON.match(address):
        value = match.group(1)
        return "person", value.lower() if not value.startswith("29:") else value
    if match := _CONVERSATION_ADDRESS.match(address):
        return "conversation", match.group(1)
    raise ValueError(
        f"'{address[:80]}' is not a Teams address: use teams:29:<user id>, teams:<Entra object id> "
        "or teams:19:<conversation id>."
    )


def is_teams_user_id(value: str) -> bool:
    return value.startswith("29:")
