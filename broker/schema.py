"""OpenAPI pieces shared by the API views."""

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
