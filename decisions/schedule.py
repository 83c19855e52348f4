"""A decision's timed steps, fixed when it is created: reminders, escalation levels and the
chain's repeats, as minutes after creation. The clock (services.decision_tick) walks them in
order; the deadline itself is expires_at.

Escalation, as in PagerDuty: level 0 is the approvers first asked, level i is escalation[i-1],
asked `after_minutes` after the start. A repeat runs the chain again: cycle k re-notifies
level 0 at k·C and level i at k·C + after_minutes, where C = the last level's after_minutes +
the first level's (the last level gets as long as the first one had).
"""

_ORDER = {"escalate": 0, "renotify": 1, "remind": 2}


def build_schedule(
    *, timeout_minutes: float, reminders: list[float], escalation: list[dict], repeat: int
) -> list[dict]:
    steps = [{"at": minutes, "kind": "remind"} for minutes in reminders]
    steps += [
        {"at": level["after_minutes"], "kind": "escalate", "level": index}
        for index, level in enumerate(escalation, start=1)
    ]
    if escalation and repeat:
        offsets = [0.0] + [level["after_minutes"] for level in escalation]
        cycle = escalation[-1]["after_minutes"] + escalation[0]["after_minutes"]
        steps += [
            {"at": round_k * cycle + offset, "kind": "renotify", "level": level}
            for round_k in range(1, repeat + 1)
            for level, offset in enumerate(offsets)
        ]
    steps = [step for step in steps if 0 < step["at"] < timeout_minutes]
    return sorted(steps, key=lambda step: (step["at"], _ORDER[step["kind"]], step.get("level", 0)))


def default_reminders(*, timeout_minutes: float, fractions: list[float]) -> list[float]:
    """The organization's reminder points (fractions of the wait, e.g. half way and 90 %)."""
    return [round(timeout_minutes * fraction, 4) for fraction in fractions]
