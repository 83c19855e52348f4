"""Shapes of the audit API: strict filters, and the event as JSON."""

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.models import AuditEvent
from decisions.serializers import StrictSerializer


class AuditFilters(StrictSerializer):
    """`from` ≤ time < `to`: consecutive periods (a day, a month) neither overlap nor miss an
    event. A time without an offset is UTC."""

    to = serializers.DateTimeField(
        required=False, source="end", help_text="events before this time (ISO 8601), exclusive"
    )
    decision = serializers.CharField(
        required=False, max_length=40, source="decision_id", help_text="one decision's events (dec_…)"
    )
    event = serializers.CharField(
        required=False, max_length=64, help_text="one kind of event, e.g. decision.answered"
    )
    actor = serializers.CharField(
        required=False, max_length=320, help_text="one actor, e.g. alice@example.com or system"
    )

    def get_fields(self):
        # "from" is a Python keyword, so it cannot be declared in the class body.
        start = serializers.DateTimeField(
            required=False,
            source="start",
            help_text="events at or after this time (ISO 8601); not after `to`",
        )
        return {"from": start, **super().get_fields()}

    def validate(self, data: dict) -> dict:
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise serializers.ValidationError({"from": ["Must not be after `to`."]})
        return data


class AuditEventListParams(AuditFilters):
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000)


class AuditEventOutput(serializers.Serializer):
    seq = serializers.IntegerField(help_text="position in the organization's hash chain, from 1")
    time = serializers.DateTimeField(source="created_at")
    decision = serializers.CharField(source="decision_id", allow_null=True)
    action = serializers.SerializerMethodField()
    event = serializers.CharField()
    actor = serializers.CharField()
    channel = serializers.CharField()
    payload = serializers.SerializerMethodField()
    content_hash = serializers.CharField(help_text="SHA-256 of what the writer recorded (docs/RETENTION.md)")
    prev_hash = serializers.CharField()
    hash = serializers.CharField(help_text="SHA-256 of prev_hash, seq and content_hash: the chain")

    def get_action(self, event: AuditEvent) -> str | None:
        return event.decision.action if event.decision else None

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_payload(self, event: AuditEvent) -> dict:
        return json.loads(event.payload)


class CheckpointListParams(StrictSerializer):
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000)


class CheckpointOutput(serializers.Serializer):
    """A signed checkpoint as the sinks receive it (audit/checkpoints.checkpoint_document).
    Only `body` is signed: check `signature` over its exact characters, then trust its fields."""

    organization_id = serializers.IntegerField()
    size = serializers.IntegerField(help_text="the chain had this many events")
    head_hash = serializers.CharField(help_text="the hash of its last event, #size")
    sealed_at = serializers.CharField(help_text="when it was signed (UTC, ISO 8601)")
    key_id = serializers.CharField(
        help_text="which public key verifies it (/.well-known/countersign/audit-keys)"
    )
    algorithm = serializers.CharField(help_text="Ed25519")
    body = serializers.CharField(
        help_text="the exact text that was signed: canonical JSON of the fields above"
    )
    signature = serializers.CharField(help_text="Ed25519 signature of `body` (UTF-8), base64url")


class DecisionExportFilters(StrictSerializer):
    """Decisions created at or after `from` and before `to`."""

    to = serializers.DateTimeField(
        required=False, source="end", help_text="decisions created before this time (ISO 8601), exclusive"
    )

    def get_fields(self):
        start = serializers.DateTimeField(
            required=False,
            source="start",
            help_text="decisions created at or after this time (ISO 8601); not after `to`",
        )
        return {"from": start, **super().get_fields()}

    def validate(self, data: dict) -> dict:
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise serializers.ValidationError({"from": ["Must not be after `to`."]})
        return data
