"""How a decision reads to a person: in the email, on the confirm page, in Slack."""

import json
from datetime import UTC, datetime

from django.utils import timezone


def _span(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} minute{'s' * (minutes != 1)}"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        text = f"{hours} hour{'s' * (hours != 1)}"
        return text + (f" {minutes} min" if minutes else "")
    return f"{round(hours / 24)} days"


def deadline_phrase(expires_at: datetime, *, now: datetime | None = None) -> str:
    """'expires in 30 minutes, at 14:05 UTC' — in the approver's terms, both relative and exact."""
    now = now or timezone.now()
    at = expires_at.astimezone(UTC)
    same_day = at.date() == now.astimezone(UTC).date()
    clock = f"{at:%H:%M} UTC" if same_day else f"{at:%H:%M} UTC on {at:%a %d %b}"
    remaining = (expires_at - now).total_seconds()
    if remaining <= 0:
        return f"expired at {clock}"
    return f"expires in {_span(remaining)}, at {clock}"


def detail_rows(details: dict) -> list[tuple[str, str]]:
    """Details as (label, text) rows; nested values shown as compact JSON."""
    rows = []
    for key, value in details.items():
        if isinstance(value, str):
            text = value
        elif isinstance(value, bool) or value is None:
            text = json.dumps(value)
        elif isinstance(value, int | float):
            text = f"{value:,}" if isinstance(value, int) else f"{value:,.2f}".rstrip("0").rstrip(".")
        else:
            text = json.dumps(value, ensure_ascii=False)
        rows.append((str(key), text))
    return rows


BUTTON_COLOURS = {"approve": "#15803d", "deny": "#b91c1c"}
OTHER_BUTTON_COLOUR = "#374151"


def option_label(option: str) -> str:
    return option[:1].upper() + option[1:]
