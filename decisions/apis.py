"""Decision endpoints: validate → call a service or selector → serialize."""

from django.db.models import DateTimeField
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.schema import error_responses
from decisions import selectors, services
from decisions.serializers import DecisionCreateInput, DecisionListFilters, DecisionOutput

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="Same key and body: the first decision again (200). Same key, other body: 409.",
)


DecisionPage = inline_serializer(
    "DecisionPage",
    fields={
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": DecisionOutput(many=True),
    },
)


class NewestFirst(CursorPagination):
    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None:
                # DRF decodes any base64 "p=…"; a position that is not a time would fail in the query.
                DateTimeField().to_python(cursor.position)
        except Exception:  # DRF answers 404 for a bad cursor; it is a bad parameter
            raise ValidationError({"cursor": ["Invalid cursor."]}) from None
        return cursor


def _idempotency_key(request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not key or len(key) > 255 or not key.isprintable():
        raise ValidationError({"Idempotency-Key": ["1 to 255 printable characters."]})
    return key


class DecisionListCreateApi(APIView):
    @extend_schema(
        operation_id="decisions_create",
        request=DecisionCreateInput,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: DecisionOutput, 200: DecisionOutput, **error_responses(400, 409, 413, 415)},
    )
    def post(self, request):
        idempotency_key = _idempotency_key(request)
        serializer = DecisionCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        decision, created = services.decision_create(
            api_key=request.auth,
            idempotency_key=idempotency_key,
            fingerprint=services.request_fingerprint(request.data),
            **serializer.validated_data,
        )
        decision = selectors.decision_get(organization_id=decision.organization_id, decision_id=decision.pk)
        return Response(DecisionOutput(decision).data, status=201 if created else 200)

    @extend_schema(
        operation_id="decisions_list",
        parameters=[DecisionListFilters],
        responses={200: DecisionPage, **error_responses(400)},
    )
    def get(self, request):
        filters = DecisionListFilters(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        query = {k: v for k, v in filters.validated_data.items() if k not in ("cursor", "limit")}
        decisions = selectors.decision_list(organization_id=request.auth.organization_id, **query)
        paginator = NewestFirst()
        page = paginator.paginate_queryset(decisions, request, view=self)
        return paginator.get_paginated_response(DecisionOutput(page, many=True).data)


class DecisionDetailApi(APIView):
    @extend_schema(operation_id="decisions_retrieve", responses={200: DecisionOutput, **error_responses(404)})
    def get(self, request, decision_id: str):
        decision = selectors.decision_get(
            organization_id=request.auth.organization_id, decision_id=decision_id
        )
        return Response(DecisionOutput(decision).data)


class DecisionCancelApi(APIView):
    @extend_schema(
        operation_id="decisions_cancel",
        request=None,
        responses={200: DecisionOutput, **error_responses(404, 409)},
    )
    def post(self, request, decision_id: str):
        decision = selectors.decision_get(
            organization_id=request.auth.organization_id, decision_id=decision_id
        )
        services.decision_cancel(decision=decision, actor=request.auth.actor)
        decision = selectors.decision_get(
            organization_id=request.auth.organization_id, decision_id=decision_id
        )
        return Response(DecisionOutput(decision).data)
