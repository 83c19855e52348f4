"""The policy and approver-group forms of the admin: rows and lines instead of raw JSON.

Each field turns what an admin typed into exactly the JSON the policy engine reads
(decisions/policies.py) and the API accepts; Policy.clean and ApproverGroup.clean then validate
the whole rule as before (decisions/policy_validation.py). A field posted as one JSON value
(a script, an old bookmark of the form) is still read as JSON, with a clear message if it is not.
"""

import json
import re

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from decisions.addresses import parse_address
from decisions.models import ApproverGroup, Policy, Urgency
from decisions.policies import OPERATOR_LABELS, OPERATORS, check_condition

OPERATOR_CHOICES = [("", "—")] + [(op, f"{OPERATOR_LABELS.get(op, op)} ({op})") for op in OPERATORS]
FIELD_SUGGESTIONS = ["action", "urgency", "details.amount", "details.currency", "details.environment"]
QUORUM_CHOICES = ["any", "all"]
QUORUM_HELP = 'any (one approval), all (everyone asked) or a number; blank: "any"'


class Rows(list):
    """Rows as the admin typed them, [{column: text}]: what a refused form shows again."""


def _getlist(data, key: str) -> list[str]:
    return data.getlist(key) if hasattr(data, "getlist") else [data[key]] if key in data else []


class RowsWidget(forms.Widget):
    """A table of rows, one input per column. Every row's inputs share their names
    (`conditions-field`, `conditions-op`, …), so rows line up by position in the POST and the
    vanilla JS that adds a row only clones one. One blank row is always offered, so the form
    works without JavaScript too; blank rows are dropped."""

    def __init__(self, columns: list[tuple[str, str, object]], add_label: str):
        # columns: (key, heading, kind): kind is "field" (a condition's field, with suggestions),
        # "text", "number", "lines" (one item per line), "quorum", or a list of choices
        super().__init__()
        self.columns = columns
        self.add_label = add_label

    class Media:
        js = ["decisions/admin_rows.js"]
        css = {"all": ["decisions/admin.css"]}

    def value_from_datadict(self, data, files, name):
        keys = [f"{name}-{key}" for key, _, _ in self.columns]
        if name in data and not any(key in data for key in keys):
            return data[name]  # one JSON value
        columns = [_getlist(data, key) for key in keys]
        rows = Rows()
        for index in range(max(map(len, columns), default=0)):
            row = {
                key: (column[index] if index < len(column) else "")
                for (key, _, _), column in zip(self.columns, columns, strict=True)
            }
            if any(text.strip() for text in row.values()):
                rows.append(row)
        return rows

    def value_omitted_from_data(self, data, files, name) -> bool:
        return False  # no rows posted means none

    def _input(self, name: str, key: str, kind, text: str):
        field = f"{name}-{key}"
        if kind == "lines":
            return format_html('<textarea name="{}" rows="3" cols="34">{}</textarea>', field, text)
        if kind == "number":
            return format_html(
                '<input type="number" name="{}" value="{}" step="any" min="0" class="vIntegerField">',
                field,
                text,
            )
        if kind == "quorum":
            return format_html(
                '<input type="text" name="{}" value="{}" size="6" list="{}-choices" placeholder="any">',
                field,
                text,
                field,
            )
        if kind == "field":
            return format_html(
                '<input type="text" name="{}" value="{}" size="24" list="{}-choices">', field, text, field
            )
        if kind == "text":
            return format_html('<input type="text" name="{}" value="{}" size="24">', field, text)
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            ((value, " selected" if value == text else "", label) for value, label in kind),
        )
        return format_html('<select name="{}">{}</select>', field, options)

    def _row(self, name: str, row: dict):
        cells = format_html_join(
            "",
            "<td>{}</td>",
            ((self._input(name, key, kind, row.get(key, "")),) for key, _, kind in self.columns),
        )
        return format_html(
            '<tr class="cs-row">{}<td><button type="button" class="cs-remove-row" '
            'title="clear this row">✕</button></td></tr>',
            cells,
        )

    def render(self, name, value, attrs=None, renderer=None):
        rows = list(value) if isinstance(value, list) else []
        if isinstance(value, str) and value.strip():
            # A JSON value that was refused: show it as typed rather than lose it.
            return format_html('<textarea name="{}" rows="4" cols="60">{}</textarea>', name, value)
        heads = format_html_join("", "<th>{}</th>", ((heading,) for _, heading, _ in self.columns))
        body = format_html_join("", "{}", ((self._row(name, row),) for row in [*rows, {}]))
        return format_html(
            '<div class="cs-rows" id="id_{}"><table><thead><tr>{}<th></th></tr></thead>'
            "<tbody>{}</tbody></table>"
            '<button type="button" class="cs-add-row button">{}</button>{}</div>',
            name,
            heads,
            body,
            self.add_label,
            self._datalists(name),
        )

    def _datalists(self, name: str):
        """Suggestions for the free-text columns: one list per column, shared by its rows."""
        suggestions = {"quorum": QUORUM_CHOICES, "field": FIELD_SUGGESTIONS}
        return format_html_join(
            "",
            '<datalist id="{}-{}-choices">{}</datalist>',
            (
                (name, key, format_html_join("", '<option value="{}">', ((s,) for s in suggestions[kind])))
                for key, _, kind in self.columns
                if isinstance(kind, str) and kind in suggestions
            ),
        )


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        raise ValidationError(
            "Not valid JSON. Fill in the rows instead, or post a JSON list such as "
            '[{"field": "details.amount", "op": "lt", "value": 50}].'
        ) from None


def parse_scalar(text: str):
    """A condition value as typed: JSON where it reads as JSON (500, 12.5, true, null, "500",
    ["a", "b"]), otherwise the text itself (refund, EUR, all)."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def _scalar_text(value) -> str:
    if isinstance(value, str) and parse_scalar(value) == value and value == value.strip():
        return value
    return json.dumps(value, ensure_ascii=False)


def condition_value(text: str, op: str):
    """The JSON value a condition stores for what was typed in its row."""
    if op in ("in", "not_in") and not text.strip().startswith("["):
        return [parse_scalar(item) for item in text.split(",") if item.strip()]
    if op == "exists":
        answer = text.strip().lower()
        if answer in ("", "true", "yes"):
            return True
        if answer in ("false", "no"):
            return False
        raise ValueError("exists takes true (the field is present) or false (it is absent).")
    return parse_scalar(text)


def value_text(value, op: str) -> str:
    """How a stored condition value is shown in its row: typed back, it gives the same value."""
    if op in ("in", "not_in") and isinstance(value, list):
        items = [_scalar_text(item) for item in value]
        if value and all("," not in item and item.strip() for item in items):
            return ", ".join(items)
    return _scalar_text(value)


def address_list(text: str) -> list[str]:
    """Addresses, one per line (or separated by commas), each checked with the API's rules."""
    if text.strip().startswith("["):
        value = _json(text)
        if not isinstance(value, list):
            raise ValidationError("A list of addresses.")
        return value
    addresses = [line.strip() for line in re.split(r"[\n,]", text) if line.strip()]
    problems = []
    for address in addresses:
        try:
            parse_address(address)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValidationError(problems)
    return addresses


def quorum_value(text: str):
    text = text.strip().strip('"').strip().lower()
    if not text:
        return None
    if text in ("any", "all"):
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValidationError(f"Quorum {text!r}: use any, all or a whole number of approvals (1 or more).")


def minutes_value(text: str) -> int | float:
    try:
        minutes = float(text)
    except ValueError:
        raise ValidationError(f"{text!r} is not a number of minutes.") from None
    return int(minutes) if minutes.is_integer() else minutes


class AddressLinesField(forms.Field):
    widget = forms.Textarea(attrs={"rows": 4, "cols": 40, "placeholder": "alice@example.com\nslack:U123ABC"})

    def prepare_value(self, value):
        return "\n".join(map(str, value)) if isinstance(value, list) else value or ""

    def to_python(self, value):
        return address_list(value or "")


class QuorumInput(forms.TextInput):
    """A text input that suggests any and all; a number is typed."""

    def __init__(self):
        super().__init__(attrs={"size": 6, "placeholder": "any"})

    def render(self, name, value, attrs=None, renderer=None):
        attrs = {**(attrs or {}), "list": f"{name}-choices"}
        options = format_html_join("", '<option value="{}">', ((choice,) for choice in QUORUM_CHOICES))
        return format_html(
            '{}<datalist id="{}-choices">{}</datalist>',
            super().render(name, value, attrs, renderer),
            name,
            options,
        )


class QuorumField(forms.Field):
    widget = QuorumInput

    def prepare_value(self, value):
        return "" if value is None else str(value)

    def to_python(self, value):
        return value if isinstance(value, int) else quorum_value(value or "")


class RowsField(forms.Field):
    """A list of JSON objects edited as rows: subclasses say how a row maps to an object."""

    what = "row"

    def prepare_value(self, value):
        if isinstance(value, Rows | str):
            return value  # as typed: a refused form shows it again
        return Rows(self.to_row(item) for item in value or [] if isinstance(item, dict))

    def to_python(self, value):
        if isinstance(value, str):
            return _json(value) if value.strip() else []
        items = []
        for number, row in enumerate(value or [], start=1):
            try:
                items.append(self.from_row(row))
            except ValidationError as exc:
                raise ValidationError([f"{self.what} {number}: {m}" for m in exc.messages]) from None
            except ValueError as exc:
                raise ValidationError(f"{self.what} {number}: {exc}") from None
        return items

    def to_row(self, item: dict) -> dict:
        raise NotImplementedError

    def from_row(self, row: dict) -> dict:
        raise NotImplementedError


class ConditionsField(RowsField):
    what = "Condition"

    def __init__(self, **kwargs):
        columns = [
            ("field", "Field", "field"),
            ("op", "Operator", OPERATOR_CHOICES),
            ("value", "Value", "text"),
        ]
        super().__init__(widget=RowsWidget(columns, "Add a condition"), **kwargs)

    def to_row(self, item):
        op = item.get("op", "")
        return {"field": item.get("field", ""), "op": op, "value": value_text(item.get("value"), op)}

    def from_row(self, row):
        field, op = row["field"].strip(), row["op"].strip()
        if not field:
            raise ValueError("name a field: action, urgency or details.<key>.")
        if not op:
            raise ValueError("choose an operator.")
        condition = {"field": field, "op": op, "value": condition_value(row["value"], op)}
        check_condition(condition)  # the engine's own check: its message names the problem
        return condition


class StagesField(RowsField):
    what = "Stage"

    def __init__(self, **kwargs):
        columns = [("approvers", "Approvers (one per line)", "lines"), ("quorum", "Quorum", "quorum")]
        super().__init__(widget=RowsWidget(columns, "Add a stage"), **kwargs)

    def to_row(self, item):
        quorum = item.get("quorum")
        return {
            "approvers": "\n".join(item.get("approvers", [])),
            "quorum": "" if quorum is None else str(quorum),
        }

    def from_row(self, row):
        approvers = address_list(row["approvers"])
        if not approvers:
            raise ValueError("name at least one approver.")
        return {"approvers": approvers, "quorum": quorum_value(row["quorum"]) or "any"}


class EscalationField(RowsField):
    what = "Escalation level"

    def __init__(self, **kwargs):
        columns = [
            ("after_minutes", "After (minutes)", "number"),
            ("approvers", "Also ask (one per line)", "lines"),
        ]
        super().__init__(widget=RowsWidget(columns, "Add a level"), **kwargs)

    def to_row(self, item):
        minutes = item.get("after_minutes")
        return {
            "after_minutes": "" if minutes is None else f"{minutes:g}",
            "approvers": "\n".join(item.get("approvers", [])),
        }

    def from_row(self, row):
        if not row["after_minutes"].strip():
            raise ValueError("say after how many minutes.")
        approvers = address_list(row["approvers"])
        if not approvers:
            raise ValueError("name at least one approver to ask.")
        return {"after_minutes": minutes_value(row["after_minutes"]), "approvers": approvers}


class PolicyForm(forms.ModelForm):
    conditions = ConditionsField(
        required=False,
        help_text="The rule matches when ALL of these hold; with none it matches every decision. "
        "For “any of”, add one rule per alternative. A value is read as JSON where it can be "
        '(500, true, "500" for text); otherwise as text. For “is one of”, separate values with commas.',
    )
    approvers = AddressLinesField(
        required=False,
        help_text="One per line: an email, slack:U123ABC, slack:#channel or group:<approver group>. "
        "Use this or stages, not both.",
    )
    quorum = QuorumField(required=False, help_text=QUORUM_HELP)
    stages = StagesField(
        required=False,
        help_text="Asked one after another: the next stage only once the previous one approved.",
    )
    escalation = EscalationField(
        required=False,
        help_text="Who else is asked if nobody has answered after so many minutes (before the timeout).",
    )

    class Meta:
        model = Policy
        fields = [
            "organization",
            "name",
            "position",
            "enabled",
            "conditions",
            "action",
            "approvers",
            "quorum",
            "stages",
            "timeout_minutes",
            "urgency",
            "escalation",
            "override",
        ]


class ApproverGroupForm(forms.ModelForm):
    members = AddressLinesField(
        help_text="One per line: an email, slack:U123ABC or slack:#channel. Groups do not nest.",
    )

    class Meta:
        model = ApproverGroup
        fields = ["organization", "name", "members"]


class PolicyPreviewForm(forms.Form):
    """What an agent would send, as far as the rules read it."""

    organization = forms.ModelChoiceField(queryset=None, empty_label=None)
    action = forms.CharField(
        max_length=500,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="the decision's action, e.g. Refund $900 to order #1042",
    )
    urgency = forms.ChoiceField(choices=Urgency.choices, initial=Urgency.NORMAL)
    details = forms.CharField(
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 4, "cols": 60, "placeholder": '{"amount": 900, "currency": "EUR"}'}
        ),
        help_text="the decision's details as the agent sends them: a JSON object",
    )
    approvers = AddressLinesField(
        required=False,
        help_text="if the agent names approvers itself, one per line (a rule fills in the rest)",
    )
    timeout_minutes = forms.FloatField(required=False, min_value=0.01, help_text="if the agent sets one")

    def __init__(self, *args, organizations, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = organizations

    def clean_details(self) -> dict:
        text = self.cleaned_data["details"].strip()
        if not text:
            return {}
        try:
            details = json.loads(text)
        except ValueError as exc:
            raise ValidationError(f"Details are not valid JSON ({exc.msg} at line {exc.lineno}).") from None
        if not isinstance(details, dict):
            raise ValidationError('Details are a JSON object, e.g. {"amount": 900}.')
        return details
