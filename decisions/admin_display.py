"""How a decision's stored JSON reads on its admin page: small tables and sentences, not raw
JSON. Only presentation; nothing here decides anything."""

import json
from datetime import datetime

from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from decisions.display import detail_rows
from decisions.models import Policy

EMPTY = "—"


def when(moment: datetime | str | None) -> str:
    """A time as the admin writes every time: '2 Dec 2026, 14:03 UTC'."""
    if isinstance(moment, str):
        moment = parse_datetime(moment)
    if moment is None:
        return EMPTY
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def when_short(moment: datetime | None) -> str:
    """A list column's time: '2 Dec, 14:03 UTC', the year only when it is not this one."""
    if moment is None:
        return EMPTY
    local = timezone.localtime(moment)
    same_year = local.year == timezone.localtime().year
    return date_format(local, "j M, H:i T" if same_year else "j M Y, H:i T")


def facts_table(rows: list[tuple[str, object]]) -> SafeString | str:
    if not rows:
        return EMPTY
    body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
    return format_html('<table class="cs-facts">{}</table>', body)


def details_table(details) -> SafeString | str:
    """A JSON object as label/value rows; anything else as compact JSON."""
    if not isinstance(details, dict):
        return EMPTY if details in (None, "") else json.dumps(details, ensure_ascii=False)
    return facts_table(detail_rows(details))


def outcome_table(outcome: dict | None) -> SafeString | str:
    """Who resolved it, how, when and with what answer; the details only if they were edited."""
    if not outcome:
        return "pending: no outcome yet"
    rows = [("status", outcome.get("status")), ("by", outcome.get("by")), ("via", outcome.get("via"))]
    rows.append(("at", when(outcome.get("at"))))
    rows += [(key, outcome[key]) for key in ("choice", "text", "note") if outcome.get(key)]
    if "details" in outcome:
        rows.append(("final details", details_table(outcome["details"])))
    return facts_table(rows)


def stages_list(stages: list[dict], current: int | None = None) -> SafeString | str:
    if not stages:
        return EMPTY
    rows = []
    for number, stage in enumerate(stages):
        marker = " ← current" if current == number and len(stages) > 1 else ""
        rows.append(
            (
                f"stage {number + 1}",
                f"{', '.join(stage.get('approvers', []))} (quorum: {stage.get('quorum', 'any')}){marker}",
            )
        )
    return facts_table(rows)


def escalation_list(levels: list[dict], repeat: int = 0) -> SafeString | str:
    if not levels:
        return "none"
    rows = [
        (f"after {level.get('after_minutes', 0):g} min", ", ".join(level.get("approvers", [])))
        for level in levels
    ]
    if repeat:
        rows.append(("repeats", f"{repeat} more time{'s' * (repeat != 1)}"))
    return facts_table(rows)


def minutes_list(minutes: list) -> str:
    if not minutes:
        return "none"
    return ", ".join(f"{m:g}" for m in minutes) + " minutes after creation"


def policy_link(policy: dict | None, organization_id: int) -> SafeString | str:
    """The rule that matched, linked to its page if it still exists under that name."""
    if not policy:
        return "no rule matched"
    rule = Policy.objects.filter(organization_id=organization_id, name=policy.get("name")).first()
    label = f"{policy.get('name')} ({policy.get('action')})"
    if rule is None:
        return label
    return format_html('<a href="{}">{}</a>', reverse("admin:decisions_policy_change", args=[rule.pk]), label)


def payload_lines(payload) -> SafeString | str:
    """An audit event's payload (canonical JSON text) as key: value lines, nested values as
    compact JSON."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return payload  # shown as stored: the audit trail is never rewritten for display
    return _lines(payload)


def _lines(value, depth: int = 0) -> SafeString | str:
    if isinstance(value, dict) and value and depth < 3:
        return format_html_join(
            "",
            '<div class="cs-line"><strong>{}</strong>: {}</div>',
            ((key, _lines(item, depth + 1)) for key, item in value.items()),
        )
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ", ".join(value) or EMPTY
    return json.dumps(value, ensure_ascii=False)
