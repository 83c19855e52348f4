"""Audit endpoints: the organization's trail as JSON pages and as one streamed CSV file, and
its signed checkpoints (all need a key with the audit scope); the public key that verifies
checkpoints, for anyone."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import selectors, signing
from audit.checkpoints import checkpoint_document
from audit.decision_export import DECISION_COLUMNS, decision_export_chunks
from audit.export import EXPORT_COLUMNS, csv_download, export_response
from audit.serializers import (
    AuditEventListParams,
    AuditEventOutput,
    AuditFilters,
    CheckpointListParams,
    CheckpointOutput,
    DecisionExportFilters,
)
from broker.pagination import StrictCursorPagination, page_schema
from broker.schema import error_responses
from organizations.auth import HasAuditScope

AuditEventPage = page_schema("AuditEventPage", AuditEventOutput)

EXPORT_DESCRIPTION = (
    "The organization's audit trail as CSV (UTF-8 with a byte order mark, CRLF line ends), one "
    "row per event in chain order, streamed. Columns: "
    + ", ".join(f"`{column}`" for column in EXPORT_COLUMNS)
    + ". `time` is UTC ISO 8601; `choice`, `note`, `ip` and `user_agent` come from the event's "
    "payload where it has them; `payload` is the exact canonical JSON the hash covers, so "
    "`manage.py verify_audit --archive` can recompute the chain from the file. Any cell "
    "starting with = + - @ (or their fullwidth forms, U+FF1D U+FF0B U+FF0D U+FF20), a space, "
    "tab, CR, LF, NUL or ' has one ' put in front, so spreadsheets never run it as a formula; "
    "remove that one ' to get the original value."
)


class Chronological(StrictCursorPagination):
    ordering = "seq"
    page_size = 100
    max_page_size = 1000

    def check_position(self, position: str) -> None:
        if not 0 <= int(position) < 2**63:
            raise ValueError(position)


class JSONForErrors(BaseContentNegotiation):
    """The CSV download answers whatever the client accepts (browsers, curl, spreadsheet
    tools): only errors are rendered by DRF, and they are always JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0]


class AuditEventListApi(APIView):
    permission_classes = [HasAuditScope]

    @extend_schema(
        operation_id="audit_events_list",
        parameters=[AuditEventListParams],
        responses={200: AuditEventPage, **error_responses(400, 403)},
    )
    def get(self, request):
        params = AuditEventListParams(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        filters = {k: v for k, v in params.validated_data.items() if k not in ("cursor", "limit")}
        events = selectors.audit_events_for(organization_id=request.auth.organization_id, **filters)
        paginator = Chronological()
        page = paginator.paginate_queryset(events, request, view=self)
        return paginator.get_paginated_response(AuditEventOutput(page, many=True).data)


class AuditExportApi(APIView):
    permission_classes = [HasAuditScope]
    content_negotiation_class = JSONForErrors

    @extend_schema(
        operation_id="audit_export_csv",
        description=EXPORT_DESCRIPTION,
        parameters=[AuditFilters],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="The CSV file; its columns are in the description above."
            ),
            **error_responses(400, 403),
        },
    )
    def get(self, request):
        filters = AuditFilters(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        organization = request.auth.organization
        events = selectors.audit_events_for(organization_id=organization.pk, **filters.validated_data)
        return export_response(
            request, events, slugs={organization.pk: organization.slug}, name=organization.slug
        )


CheckpointPage = page_schema("CheckpointPage", CheckpointOutput)


class BySize(Chronological):
    ordering = "size"


class CheckpointListApi(APIView):
    permission_classes = [HasAuditScope]

    @extend_schema(
        operation_id="audit_checkpoints_list",
        description=(
            "The organization's signed checkpoints, oldest first: each says the chain had `size` "
            "events ending in `head_hash`. Keep copies: `manage.py verify_audit --checkpoints <url "
            "or directory>` fails on any rewrite of the trail that disagrees with them."
        ),
        parameters=[CheckpointListParams],
        responses={200: CheckpointPage, **error_responses(400, 403)},
    )
    def get(self, request):
        CheckpointListParams(data=request.query_params.dict()).is_valid(raise_exception=True)
        checkpoints = selectors.checkpoints_for(organization_id=request.auth.organization_id)
        paginator = BySize()
        page = paginator.paginate_queryset(checkpoints, request, view=self)
        return paginator.get_paginated_response([checkpoint_document(c) for c in page or []])


class AuditKeysApi(APIView):
    """Public: a key verifies checkpoints, it reveals nothing."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="audit_keys",
        auth=[],
        responses={
            200: inline_serializer(
                "AuditKeys",
                fields={
                    "keys": inline_serializer(
                        "AuditKey",
                        fields={
                            "key_id": serializers.CharField(),
                            "algorithm": serializers.CharField(),
                            "public_key": serializers.CharField(help_text="raw 32-byte key, base64url"),
                        },
                        many=True,
                    )
                },
            )
        },
    )
    def get(self, request):
        public_key = signing.public_key_text()
        return Response(
            {
                "keys": [
                    {
                        "key_id": signing.key_id(public_key),
                        "algorithm": signing.ALGORITHM,
                        "public_key": public_key,
                    }
                ]
            }
        )


class DecisionExportApi(APIView):
    permission_classes = [HasAuditScope]
    content_negotiation_class = JSONForErrors

    @extend_schema(
        operation_id="audit_decisions_csv",
        description=(
            "One row per decision, oldest first, streamed: who was asked (address, channel, stage "
            "or escalation level, when notified), who answered what and when, the time to answer, "
            "the escalations and the outcome. Columns: "
            + ", ".join(f"`{column}`" for column in DECISION_COLUMNS)
            + ". Times are UTC ISO 8601; cells are neutralised against spreadsheet formulas as in "
            "the event export. The event export (`/audit/export.csv`) is the evidence; this is "
            "the summary."
        ),
        parameters=[DecisionExportFilters],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The CSV file."),
            **error_responses(400, 403),
        },
    )
    def get(self, request):
        filters = DecisionExportFilters(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        organization = request.auth.organization
        chunks = decision_export_chunks(organization_id=organization.pk, **filters.validated_data)
        return csv_download(request, chunks, filename=f"decisions-{organization.slug}")
