"""Shapes of the decision API: strict input validation, and the decision object."""

from typing import ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from broker.fields import JSONObjectField, StrictBooleanField, StrictCharField, StrictNumberField
from broker.reused_serializers import ReusedSerializer
from broker.schema import SchemaRules
from decisions.addresses import (
    EMAIL_PATTERN,
    MAX_ADDRESS_LENGTH,
    address_description,
    address_pattern,
    parse_address,
)
from decisions.models import Decision, OnTimeout, ResponseType, Status, Urgency, Verification
from decisions.specs import DecisionSpec
from notifications.ssrf import check_callback_url

MAX_APPROVERS = 50
MAX_TIMEOUT_MINUTES = 365 * 24 * 60


@extend_schema_field(
    {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ADDRESS_LENGTH,
        "pattern": address_pattern(),
        "description": address_description(),
    }
)
class ApproverField(StrictCharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=MAX_ADDRESS_LENGTH, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            parse_address(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value.strip()


def approver_list(**kwargs) -> serializers.ListField:
    return serializers.ListField(child=ApproverField(), min_length=1, max_length=MAX_APPROVERS, **kwargs)


@extend_schema_field(
    {"oneOf": [{"type": "string", "enum": ["any", "all"]}, {"type": "integer", "minimum": 1}]}
)
class QuorumField(serializers.Field):
    default_error_messages = {"invalid": 'Use "any", "all" or a whole number of approvals (1 or more).'}

    def to_internal_value(self, data):
        if data in ("any", "all"):
            return data
        if isinstance(data, bool) or not isinstance(data, int) or data < 1:
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class StageInput(serializers.Serializer):
    approvers = approver_list()
    quorum = QuorumField(default="any")


# Numbers that must be more than 0, and less than the longest timeout, as OpenAPI 3.0 says it.
MORE_THAN_0 = {"minimum": 0, "exclusiveMinimum": True}
BEFORE_THE_LONGEST_TIMEOUT = {**MORE_THAN_0, "maximum": MAX_TIMEOUT_MINUTES, "exclusiveMaximum": True}


class EscalationLevelInput(SchemaRules, serializers.Serializer):
    """One escalation level: who else is asked, and how long after the start."""

    after_minutes = StrictNumberField(min_value=0.0)
    approvers = approver_list()

    schema_properties: ClassVar[dict] = {"after_minutes": BEFORE_THE_LONGEST_TIMEOUT}

    def validate_after_minutes(self, value):
        if value <= 0:
            raise serializers.ValidationError("Must be more than 0.")
        return value


class StrictSerializer(SchemaRules, serializers.Serializer):
    """Refuses fields it does not know: a typo such as "timeout_minute" must not be ignored."""

    refuses_unknown_fields = True

    def to_internal_value(self, data):
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(self.fields))):
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown[:20]})
        return super().to_internal_value(data)


class PolicyRoutingInput(StrictSerializer):
    """What a policy rule may set, validated with the very fields the API uses."""

    approvers = approver_list(required=False)
    quorum = QuorumField(required=False, allow_null=True)
    stages = serializers.ListField(child=StageInput(), min_length=1, max_length=10, required=False)
    timeout_minutes = StrictNumberField(required=False, allow_null=True, max_value=MAX_TIMEOUT_MINUTES)
    escalation = serializers.ListField(child=EscalationLevelInput(), max_length=10, required=False)

    def validate_timeout_minutes(self, value):
        if value is not None and value <= 0:
            raise serializers.ValidationError("Must be more than 0.")
        return value

    def validate_escalation(self, value: list[dict]) -> list[dict]:
        return _levels_in_order(value)

    def validate(self, data: dict) -> dict:
        if data.get("approvers") and data.get("stages"):
            raise serializers.ValidationError({"stages": ["Set approvers or stages, not both."]})
        return data


def _levels_in_order(levels: list[dict]) -> list[dict]:
    times = [level["after_minutes"] for level in levels]
    if times != sorted(set(times)):
        raise serializers.ValidationError(
            "Levels must come in order of after_minutes, each later than the last."
        )
    return levels


_JSON_OBJECT = (
    "Any JSON object, at most 32 levels deep; no string in it (keys included) may contain NUL (\\u0000)."
)
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_CALLBACK_URL = rf"^https?://{_HOST}(?::{_PORT})?(?:[/?#][!-~]*)?$"
# A character that str.strip() keeps: no NUL, nor space as Python's \s or ECMAScript's counts it.
_KEPT = "[^\\s\\x00\\x1c-\\x1f\\x85\\ufeff]"
_ALLOW_EDIT = {"required": ["allow_edit"], "properties": {"allow_edit": {"enum": [True]}}}


class DecisionCreateInput(StrictSerializer):
    action = StrictCharField(min_length=1, max_length=500, trim_whitespace=False)
    context = StrictCharField(max_length=20_000, allow_blank=True, trim_whitespace=False, default="")
    details = JSONObjectField(default=dict)
    approver = ApproverField(required=False)
    approvers = approver_list(required=False)
    quorum = QuorumField(required=False)
    stages = serializers.ListField(child=StageInput(), min_length=1, max_length=10, required=False)
    options = serializers.ListField(
        child=StrictCharField(min_length=1, max_length=64), min_length=1, max_length=10, required=False
    )
    response = serializers.ChoiceField(choices=ResponseType.choices, default=ResponseType.CHOICE)
    allow_edit = StrictBooleanField(default=False)
    urgency = serializers.ChoiceField(choices=Urgency.choices, default=Urgency.NORMAL)
    timeout_minutes = StrictNumberField(required=False, max_value=MAX_TIMEOUT_MINUTES)
    on_timeout = serializers.ChoiceField(choices=OnTimeout.choices, default=OnTimeout.EXPIRE)
    verification = serializers.ChoiceField(
        choices=Verification.choices,
        default=Verification.LINK,
        help_text="link: email or Slack answers; session: only in the portal, freshly signed in; "
        "passkey: only in the portal, with a passkey verifying the user.",
    )
    requested_by = StrictCharField(
        max_length=320,
        required=False,
        help_text="The email address of the person who asked the agent: they are never asked, and "
        "can never approve it.",
    )
    distinct_stage_approvers = StrictBooleanField(
        default=True, help_text="Nobody approves two stages of this decision (the default)."
    )
    escalation = serializers.ListField(child=EscalationLevelInput(), max_length=10, default=list)
    escalation_repeat = serializers.IntegerField(min_value=0, max_value=10, default=0)
    reminders = serializers.ListField(
        child=StrictNumberField(), max_length=10, required=False, help_text="minutes after the start"
    )
    callback_url = StrictCharField(max_length=2000, required=False)
    metadata = JSONObjectField(default=dict)

    # What validate() and decision_create check beyond the fields, as far as JSON Schema can say
    # it. It cannot compare one field with another; those rules are in the descriptions.
    schema_properties: ClassVar[dict] = {
        "action": {"pattern": f"^[^\\x00]*{_KEPT}[^\\x00]*$"},  # not blank
        "details": {"description": _JSON_OBJECT},
        "metadata": {"description": _JSON_OBJECT + " Echoed back untouched."},
        "approvers": {"description": "Use approver, approvers or stages, not two of them."},
        "quorum": {
            "description": "A number is at most the people who could approve: the approvers, "
            "groups expanded, and those of the escalation. Not with stages (each has its own)."
        },
        "stages": {"description": "Sequential sign-off; instead of approver or approvers."},
        "options": {
            # Each is stripped of surrounding space by the server: without any, uniqueItems holds.
            "items": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "pattern": f"^{_KEPT}(?:[^\\x00]*{_KEPT})?$",
            },
            "uniqueItems": True,
            "description": "Not with response: text.",
        },
        "allow_edit": {"description": 'Needs an "approve" option; not with response: text.'},
        "timeout_minutes": {
            **MORE_THAN_0,
            "description": "Default: the organization's. Later than every escalation level and reminder.",
        },
        "escalation": {
            "description": "In order of after_minutes, each later than the last, all before the timeout."
        },
        "reminders": {
            "items": {"type": "number", "format": "double", **BEFORE_THE_LONGEST_TIMEOUT},
            "description": "Minutes after the start, each before the timeout.",
        },
        "requested_by": {
            "pattern": EMAIL_PATTERN,
            "description": "An email address. Not the only approver of any stage.",
        },
        "distinct_stage_approvers": {
            "description": "When true (the default), no stage's only approver is an earlier stage's "
            "only approver."
        },
        "callback_url": {
            "format": "uri",
            "pattern": _CALLBACK_URL,
            "description": "http(s), no credentials; its host must resolve to public addresses only "
            "(unless the operator sets CALLBACK_ALLOW_PRIVATE=1).",
        },
    }
    schema_rules: ClassVar[dict] = {
        "description": "At least one of approver, approvers or stages, unless a policy of the "
        "organization routes the decision.",
        "not": {
            "anyOf": [
                {"required": ["approver", "approvers"]},
                {"required": ["approver", "stages"]},
                {"required": ["approvers", "stages"]},
                {"required": ["stages", "quorum"]},
            ]
        },
        "allOf": [
            {  # a text response has no options and cannot be edited
                "anyOf": [
                    {"not": {"required": ["response"], "properties": {"response": {"enum": ["text"]}}}},
                    {"not": {"anyOf": [{"required": ["options"]}, _ALLOW_EDIT]}},
                ]
            },
            {  # editing needs an "approve" option
                "anyOf": [
                    {"not": _ALLOW_EDIT},
                    {"not": {"required": ["options"]}},
                    {"properties": {"options": {"not": {"items": {"not": {"enum": ["approve"]}}}}}},
                ]
            },
        ],
    }

    def validate_action(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Describe the action.")
        return value

    def validate_timeout_minutes(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("Must be more than 0.")
        return value

    def validate_options(self, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Options must be different from each other.")
        return value

    def validate_escalation(self, value: list[dict]) -> list[dict]:
        return _levels_in_order(value)

    def validate_reminders(self, value: list[float]) -> list[float]:
        if any(minutes <= 0 for minutes in value):
            raise serializers.ValidationError(
                "Each reminder comes some minutes after the start: more than 0."
            )
        return sorted(set(value))

    def validate_callback_url(self, value: str) -> str:
        try:
            check_callback_url(value, allow_private=settings.CALLBACK_ALLOW_PRIVATE)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_requested_by(self, value: str) -> str:
        value = value.strip().lower()
        try:
            validate_email(value)
        except DjangoValidationError:
            raise serializers.ValidationError("An email address.") from None
        return value

    def validate(self, data: dict) -> dict:
        routes = [name for name in ("approver", "approvers", "stages") if name in data]
        if len(routes) > 1:
            raise serializers.ValidationError(
                {routes[1]: [f"Send only one of approver, approvers or stages (got {', '.join(routes)})."]}
            )
        if "stages" in data and "quorum" in data:
            raise serializers.ValidationError({"quorum": ["With stages, give each stage its own quorum."]})
        approvers = [data.pop("approver")] if "approver" in data else data.pop("approvers", None)
        if approvers is not None:
            data["stages"] = [{"approvers": approvers, "quorum": data.pop("quorum", "any")}]
        # No approvers at all is for a policy to fill in, and whether a quorum can be met
        # depends on group members and escalation: decision_create checks both.
        if data["response"] == ResponseType.TEXT:
            if "options" in data:
                raise serializers.ValidationError({"options": ["Options do not apply to text responses."]})
            if data["allow_edit"]:
                raise serializers.ValidationError(
                    {"allow_edit": ["Editing applies to approvals, not text responses."]}
                )
        elif data["allow_edit"] and "approve" not in data.get("options", ["approve"]):
            raise serializers.ValidationError({"allow_edit": ['Editing needs an "approve" option.']})
        data["response_type"] = data.pop("response")
        return data


_create_input = ReusedSerializer(DecisionCreateInput)


def decision_spec_from(body) -> DecisionSpec:
    """A POST /decisions body, validated (ValidationError as DecisionCreateInput raises it),
    as decision_create takes it; its `explicit` fields are those the agent sent."""
    validated = _create_input.validated_data(body)  # first: a body that is not an object is refused
    return DecisionSpec(explicit=frozenset(body), **validated)


class DecisionListFilters(StrictSerializer):
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    cursor = serializers.CharField(
        required=False, help_text="Opaque: the value in a page's next or previous link, as it is."
    )
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200)


class ApprovalRequestOutput(serializers.Serializer):
    address = serializers.CharField()
    channel = serializers.CharField()
    group = serializers.CharField(allow_null=True)
    on_behalf_of = serializers.CharField(
        allow_null=True, help_text="the away approver this delegate was asked for"
    )
    stage = serializers.IntegerField()
    level = serializers.IntegerField()
    state = serializers.CharField()
    asked_at = serializers.DateTimeField()
    notified_at = serializers.DateTimeField(allow_null=True)
    answered_at = serializers.DateTimeField(allow_null=True)
    answered_via = serializers.CharField(allow_null=True)
    choice = serializers.CharField(allow_null=True)
    note = serializers.CharField(allow_null=True)


class OutcomeOutput(serializers.Serializer):
    status = serializers.CharField()
    choice = serializers.CharField(allow_null=True)
    text = serializers.CharField(allow_null=True)
    note = serializers.CharField(allow_null=True)
    by = serializers.CharField()
    via = serializers.CharField()
    at = serializers.DateTimeField()
    details = serializers.DictField()
    action_hash = serializers.CharField()
    verified = serializers.CharField(allow_null=True, required=False)


class PolicyMatchOutput(serializers.Serializer):
    name = serializers.CharField()
    action = serializers.CharField()


class StageOutput(serializers.Serializer):
    approvers = serializers.ListField(child=serializers.CharField())
    quorum = QuorumField()


class EscalationOutput(serializers.Serializer):
    after_minutes = serializers.FloatField()
    approvers = serializers.ListField(child=serializers.CharField())


class DecisionOutput(serializers.ModelSerializer):
    response = serializers.CharField(source="response_type")
    callback_url = serializers.SerializerMethodField()
    outcome = serializers.SerializerMethodField()
    response_notes = serializers.SerializerMethodField()
    stages = StageOutput(many=True)
    escalation = EscalationOutput(many=True)
    reminders = serializers.ListField(child=serializers.FloatField())
    policy = serializers.SerializerMethodField()
    requests = serializers.SerializerMethodField()

    class Meta:
        model = Decision
        fields = [
            "id",
            "status",
            "action",
            "context",
            "details",
            "options",
            "response",
            "allow_edit",
            "urgency",
            "stages",
            "current_stage",
            "escalation",
            "escalation_repeat",
            "reminders",
            "on_timeout",
            "verification",
            "requested_by",
            "distinct_stage_approvers",
            "policy",
            "created_at",
            "expires_at",
            "resolved_at",
            "metadata",
            "callback_url",
            "action_hash",
            "outcome",
            "response_notes",
            "requests",
        ]

    # The fields above are the decision object's schema (OpenAPI, and the reference the test
    # compares with); the object itself is built by hand, which costs a fraction of DRF's
    # per-instance field building. Each method names the field it documents.
    def to_representation(self, decision: Decision) -> dict:
        return decision_representation(decision, requests=self.context.get("requests"))

    @extend_schema_field(PolicyMatchOutput(allow_null=True))
    def get_policy(self, decision: Decision) -> dict | None:
        return decision.policy

    def get_callback_url(self, decision: Decision) -> str | None:
        return decision.callback_url or None

    @extend_schema_field(OutcomeOutput(allow_null=True))
    def get_outcome(self, decision: Decision) -> dict | None:
        return decision.outcome

    def get_response_notes(self, decision: Decision) -> str | None:
        outcome = decision.resolution
        return outcome.note if outcome else None

    @extend_schema_field(ApprovalRequestOutput(many=True))
    def get_requests(self, decision: Decision) -> list[dict]:
        return _requests_representation(decision, self.context.get("requests"))


def decision_representation(decision: Decision, *, requests=None) -> dict:
    """The decision object, exactly as DecisionOutput's fields describe it (the API, callbacks
    and MCP all send this). `requests`: its approval requests when the caller holds them (a
    create's), else they are read from the decision (or its prefetch)."""
    outcome = decision.resolution
    # str(): a decision just created holds its choices as enum members, which JSON renders
    # alike but which are not the plain strings a read gives.
    return {
        "id": str(decision.id),
        "status": str(decision.status),
        "action": str(decision.action),
        "context": str(decision.context),
        "details": decision.details,
        "options": decision.options,
        "response": str(decision.response_type),
        "allow_edit": decision.allow_edit,
        "urgency": str(decision.urgency),
        "stages": None
        if decision.stages is None
        else [
            {"approvers": [str(a) for a in stage["approvers"]], "quorum": stage["quorum"]}
            for stage in decision.stages
        ],
        "current_stage": decision.current_stage,
        "escalation": None
        if decision.escalation is None
        else [
            {"after_minutes": float(step["after_minutes"]), "approvers": [str(a) for a in step["approvers"]]}
            for step in decision.escalation
        ],
        "escalation_repeat": decision.escalation_repeat,
        "reminders": None if decision.reminders is None else [float(m) for m in decision.reminders],
        "on_timeout": str(decision.on_timeout),
        "verification": str(decision.verification),
        "requested_by": str(decision.requested_by),
        "distinct_stage_approvers": decision.distinct_stage_approvers,
        "policy": decision.policy,
        "created_at": _iso(decision.created_at),
        "expires_at": _iso(decision.expires_at),
        "resolved_at": _iso(decision.resolved_at),
        "metadata": decision.metadata,
        "callback_url": decision.callback_url or None,
        "action_hash": str(decision.action_hash),
        "outcome": decision.outcome,
        "response_notes": outcome.note if outcome else None,
        "requests": _requests_representation(decision, requests),
    }


def _requests_representation(decision: Decision, requests) -> list[dict]:
    # Sorted in Python, so that a prefetched list (or a create's own) is used as is.
    if requests is None:
        requests = decision.requests.all()
    ordered = sorted(requests, key=lambda r: (r.stage, r.level, r.pk))
    return [
        {
            "address": r.address,
            "channel": r.channel,
            "group": r.group or None,
            "on_behalf_of": r.on_behalf_of or None,
            "stage": r.stage,
            "level": r.level,
            "state": r.state,
            "asked_at": _iso(r.created_at),
            "notified_at": _iso(r.notified_at),
            "answered_at": _iso(r.answered_at),
            "answered_via": r.answered_via or None,
            "choice": r.choice or None,
            "note": r.note or None,
        }
        for r in ordered
    ]


# Stateless once built: one for the process, as DRF would render each time.
_DATETIME = serializers.DateTimeField()


def _iso(moment) -> str | None:
    return _DATETIME.to_representation(moment) if moment else None
