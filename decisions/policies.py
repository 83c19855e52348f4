"""Policy rules: conditions are data — a field, an operator, a value — never code.

A condition reads `action`, `urgency` or `details.<key>[.<key>…]` and compares it with one
of OPERATORS. A value of the wrong type simply does not match (an amount of "12" is not < 50).
`urgency` compares by rank (low < normal < high < critical).
"""

import json
import re

URGENCY_RANK = {"low": 0, "normal": 1, "high": 2, "critical": 3}
_MISSING = object()


def _ordered(left, right) -> bool:
    numbers = (int, float)
    both_numbers = isinstance(left, numbers) and isinstance(right, numbers)
    both_numbers = both_numbers and not isinstance(left, bool) and not isinstance(right, bool)
    return both_numbers or (isinstance(left, str) and isinstance(right, str))


OPERATORS = {
    "eq": lambda left, right: left == right,
    "ne": lambda left, right: left != right,
    "lt": lambda left, right: _ordered(left, right) and left < right,
    "lte": lambda left, right: _ordered(left, right) and left <= right,
    "gt": lambda left, right: _ordered(left, right) and left > right,
    "gte": lambda left, right: _ordered(left, right) and left >= right,
    "in": lambda left, right: left in right,
    "not_in": lambda left, right: left not in right,
    "contains": lambda left, right: (
        isinstance(left, str) and isinstance(right, str) and right.lower() in left.lower()
    ),
    "startswith": lambda left, right: (
        isinstance(left, str) and isinstance(right, str) and left.startswith(right)
    ),
    "exists": lambda left, right: (left is not _MISSING) == bool(right),
}
# How each operator reads to a person (the admin's form and its preview).
OPERATOR_LABELS = {
    "eq": "equals",
    "ne": "does not equal",
    "lt": "is less than",
    "lte": "is at most",
    "gt": "is more than",
    "gte": "is at least",
    "in": "is one of",
    "not_in": "is none of",
    "contains": "contains (any case)",
    "startswith": "starts with",
    "exists": "exists (true) / is absent (false)",
}
_FIELD = re.compile(r"^(action|urgency|details(\.[^.\s]{1,64}){1,5})$")


def check_condition(condition) -> None:
    """Raise ValueError unless the condition is a well-formed {field, op, value}."""
    if not isinstance(condition, dict) or set(condition) != {"field", "op", "value"}:
        raise ValueError('Each condition is {"field": …, "op": …, "value": …}.')
    field, op, value = condition["field"], condition["op"], condition["value"]
    if not isinstance(field, str) or not _FIELD.match(field):
        raise ValueError(f"Unknown field {field!r}: use action, urgency or details.<key>.")
    if op not in OPERATORS:
        raise ValueError(f"Unknown operator {op!r}: use one of {', '.join(OPERATORS)}.")
    if op in ("in", "not_in") and not isinstance(value, list):
        raise ValueError(f"{op} needs a list value.")
    if field == "urgency" and op in ("lt", "lte", "gt", "gte") and value not in URGENCY_RANK:
        raise ValueError(f"Compare urgency with one of {', '.join(URGENCY_RANK)}.")


def _read(field: str, facts: dict):
    if field in ("action", "urgency"):
        return facts[field]
    value = facts["details"]
    for key in field.split(".")[1:]:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def conditions_hold(conditions: list[dict], *, action: str, urgency: str, details: dict) -> bool:
    facts = {"action": action, "urgency": urgency, "details": details}
    for condition in conditions:
        field, op, value = condition["field"], condition["op"], condition["value"]
        actual = _read(field, facts)
        if op == "exists":
            if not OPERATORS["exists"](actual, value):
                return False
            continue
        if actual is _MISSING:
            return False
        if field == "urgency" and op in ("lt", "lte", "gt", "gte"):
            actual, value = URGENCY_RANK[actual], URGENCY_RANK[value]
        if not OPERATORS[op](actual, value):
            return False
    return True


def condition_text(condition: dict) -> str:
    """A condition as a person reads it: details.amount is at least 500."""
    label = OPERATOR_LABELS.get(condition["op"], condition["op"])
    return f"{condition['field']} {label} {json.dumps(condition['value'], ensure_ascii=False)}"
