"""OpenAPI pieces shared by the API views."""

from typing import ClassVar

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorBody = inline_serializer(
    "Error",
    fields={
        "error": inline_serializer(
            "ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(),
            },
        )
    },
)


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """Every endpoint can answer 401 and 429; add the statuses particular to it."""
    return {status: OpenApiResponse(ErrorBody) for status in sorted({401, 429, *statuses})}


# --- what the server accepts, said in the schema -------------------------------------------

# Every JSON string the API reads must be free of NUL (PostgreSQL cannot store it: the parser
# refuses the body); string fields without a pattern of their own say so with this one.
NO_NUL = "^[^\\x00]*$"


class SchemaRules:
    """For input serializers: what the server checks beyond what drf-spectacular reads from
    the fields, stated in the request schema so that a request the schema allows is one the
    server takes. `schema_properties` is merged into each named property's schema,
    `schema_rules` into the object's (rules between fields); `refuses_unknown_fields` makes it
    additionalProperties: false."""

    schema_properties: ClassVar[dict[str, dict]] = {}
    schema_rules: ClassVar[dict] = {}
    refuses_unknown_fields: ClassVar[bool] = False


class SchemaRulesExtension(OpenApiSerializerExtension):
    target_class = SchemaRules
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction != "request":
            return schema
        for name, extra in self.target.schema_properties.items():
            schema["properties"][name].update(extra)
        for field_schema in schema["properties"].values():
            _refuse_nul(field_schema)
        if self.target.refuses_unknown_fields:
            schema["additionalProperties"] = False
        schema.update(self.target.schema_rules)
        return schema


def _refuse_nul(schema: dict) -> None:
    if schema.get("type") == "string" and not {"format", "enum", "pattern"} & set(schema):
        schema["pattern"] = NO_NUL
    elif schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        _refuse_nul(schema["items"])
