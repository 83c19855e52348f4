"""Small server-rendered SVG charts for the admin report: no JavaScript, no external files,
so the page works on an air-gapped install and prints as it shows. Every label is escaped."""

import math
from collections.abc import Callable, Sequence
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

STATUS_COLOURS = {
    "approved": "#2e7d32",
    "denied": "#c62828",
    "responded": "#1565c0",
    "expired": "#ef8f00",
    "cancelled": "#757575",
    "pending": "#b0bec5",
}
MEDIAN_COLOUR = "#1565c0"
P90_COLOUR = "#90caf9"
RATE_COLOUR = "#6a1b9a"
FONT = 'font-family="system-ui, sans-serif" font-size="11" fill="currentColor"'


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times 10^n at or above value: a round top for an axis."""
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def human_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _svg(width: int, height: int, label: str, body: list[str]) -> SafeString:
    return mark_safe(  # noqa: S308 - every piece of text in body went through escape()
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT} {extra}>{escape(text)}</text>'


def _rect(x: float, y: float, width: float, height: float, colour: str, title: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(width, 0):.1f}" height="{max(height, 0):.1f}" '
        f'fill="{colour}"><title>{escape(title)}</title></rect>'
    )


def stacked_day_bars(
    days: Sequence[date], series: Sequence[tuple[str, Sequence[int]]], label: str
) -> SafeString:
    """One bar per day, stacked by series (e.g. decisions by outcome), with a legend."""
    width, height = 760, 280
    left, right, top, bottom = 40, 10, 34, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(counts[i] for _, counts in series) for i in range(len(days))]
    ceiling = nice_ceiling(max(totals, default=0))
    slot = plot_w / max(len(days), 1)
    body = []
    for fraction in (0, 0.5, 1):  # grid lines and y labels
        y = top + plot_h * (1 - fraction)
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(_text(left - 4, y + 4, f"{ceiling * fraction:g}", "end"))
    for index, day in enumerate(days):
        x, y = left + index * slot + slot * 0.15, top + plot_h
        for name, counts in series:
            if counts[index]:
                bar = plot_h * counts[index] / ceiling
                y -= bar
                title = f"{day.isoformat()}: {counts[index]} {name}"
                body.append(_rect(x, y, slot * 0.7, bar, STATUS_COLOURS.get(name, "#999"), title))
        if index % 5 == 0 or index == len(days) - 1:
            body.append(
                _text(left + index * slot + slot / 2, height - bottom + 16, day.strftime("%m-%d"), "middle")
            )
    x = left
    for name, counts in series:  # legend
        body.append(_rect(x, 8, 12, 12, STATUS_COLOURS.get(name, "#999"), f"{name}: {sum(counts)}"))
        body.append(_text(x + 16, 18, f"{name} ({sum(counts)})"))
        x += 28 + 7 * len(f"{name} ({sum(counts)})")
    if not any(totals):
        body.append(_text(width / 2, top + plot_h / 2, "no decisions in this period", "middle"))
    return _svg(width, height, label, body)


def range_bars(
    rows: Sequence[tuple[str, float, float, int]], label: str, fmt: Callable[[float], str] = human_duration
) -> SafeString:
    """Horizontal bars per row: the median (dark) over the 90th percentile (light).
    rows: (label, median, p90, number of samples)."""
    row_h, left, right, top = 26, 230, 150, 30
    width = 760
    height = top + row_h * max(len(rows), 1) + 10
    plot_w = width - left - right
    ceiling = max((p90 for _, _, p90, _ in rows), default=0) or 1
    body = [
        _rect(left, 8, 12, 12, MEDIAN_COLOUR, "median"),
        _text(left + 16, 18, "median"),
        _rect(left + 80, 8, 12, 12, P90_COLOUR, "90th percentile"),
        _text(left + 96, 18, "90th percentile"),
    ]
    for index, (name, median, p90, samples) in enumerate(rows):
        y = top + index * row_h
        shown = name if len(name) <= 34 else name[:33] + "…"
        body.append(_text(left - 6, y + 15, shown, "end"))
        summary = (
            f"{name}: median {fmt(median)}, p90 {fmt(p90)}, {samples} answer{'s' if samples != 1 else ''}"
        )
        body.append(_rect(left, y + 4, plot_w * p90 / ceiling, 16, P90_COLOUR, summary))
        body.append(_rect(left, y + 4, plot_w * median / ceiling, 16, MEDIAN_COLOUR, summary))
        body.append(
            _text(left + plot_w * p90 / ceiling + 6, y + 15, f"{fmt(median)} / {fmt(p90)} (n={samples})")
        )
    if not rows:
        body.append(_text(width / 2, top + 15, "no answers in this period", "middle"))
    return _svg(width, height, label, body)


def rate_bars(rows: Sequence[tuple[str, float | None, str]], label: str) -> SafeString:
    """Horizontal bars from 0 to 100 %: rows of (label, fraction or None, detail)."""
    row_h, left, right, top = 30, 230, 150, 10
    width = 760
    height = top + row_h * len(rows) + 6
    plot_w = width - left - right
    body = []
    for index, (name, fraction, detail) in enumerate(rows):
        y = top + index * row_h
        body.append(_text(left - 6, y + 15, name, "end"))
        body.append(_rect(left, y + 3, plot_w, 16, "#eee", detail))
        shown = "n/a" if fraction is None else f"{fraction:.1%}"
        if fraction:
            body.append(_rect(left, y + 3, plot_w * fraction, 16, RATE_COLOUR, f"{name}: {shown} ({detail})"))
        body.append(_text(left + plot_w + 6, y + 15, f"{shown} ({detail})"))
    return _svg(width, height, label, body)
