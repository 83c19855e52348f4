"""Decision endpoints: validate → call a service or selector → serialize."""

import math

from asgiref.sync import SyncToAsync, async_to_sync, sync_to_async
from django.db import connections
from django.db.models import DateTimeField
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.errors import error_response
from broker.pagination import StrictCursorPagination, page_schema
from broker.schema import error_responses
from decisions import selectors, services, waiting
from decisions.serializers import (
    DecisionCreateInput,
    DecisionListFilters,
    DecisionOutput,
    decision_representation,
    decision_spec_from,
)

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    # What _idempotency_key takes, in ASCII (header bytes beyond it are Latin-1 to Django,
    # hardly what a client means): 1 to 255 printable characters, not starting or ending with
    # a space (HTTP drops those).
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~](?:[ -~]*[!-~])?$"},
    OpenApiParameter.HEADER,
    description="Same key and body: the first decision again (200). Same key, other body: 409.",
)


DecisionPage = page_schema("DecisionPage", DecisionOutput)


class NewestFirst(StrictCursorPagination):
    ordering = "-created_at"
    page_size = 50
    max_page_size = 200

    def check_position(self, position: str) -> None:
        DateTimeField().to_python(position)  # raises for a position that is not a time


def check_idempotency_key(key: str | None) -> str | None:
    """The key as given, or None; ValidationError unless 1 to 255 printable characters."""
    if key is None:
        return None
    if not key or len(key) > 255 or not key.isprintable():
        raise ValidationError({"Idempotency-Key": ["1 to 255 printable characters."]})
    return key


def _idempotency_key(request) -> str | None:
    return check_idempotency_key(request.headers.get("Idempotency-Key"))


class DecisionListCreateApi(APIView):
    @extend_schema(
        operation_id="decisions_create",
        request=DecisionCreateInput,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: DecisionOutput, 200: DecisionOutput, **error_responses(400, 409, 413, 415)},
    )
    def post(self, request):
        idempotency_key = _idempotency_key(request)
        spec = decision_spec_from(request.data)
        decision, created = services.decision_create(
            api_key=request.auth,
            idempotency_key=idempotency_key,
            fingerprint=services.request_fingerprint(request.data),
            spec=spec,
        )
        # The service's own objects: the insert returned the JSON as stored (StoredJSONField)
        # and a new decision carries its requests, so this reads exactly as a later GET.
        requests = getattr(decision, "asked_at_creation", None) if created else None
        return Response(decision_representation(decision, requests=requests), status=201 if created else 200)

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


MAX_WAIT_SECONDS = 60
WAIT_PARAMETER = OpenApiParameter(
    "wait",
    {"type": "number", "format": "double", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
    OpenApiParameter.QUERY,
    description="Hold the request up to this many seconds (0 to 60) until the decision leaves pending.",
)


class DecisionDetailApi(APIView):
    @extend_schema(
        operation_id="decisions_retrieve",
        parameters=[WAIT_PARAMETER],
        responses={200: DecisionOutput, **error_responses(400, 404)},
    )
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


_detail_view = DecisionDetailApi.as_view()
_detail_once = sync_to_async(_detail_view)


def _parse_wait(raw: str) -> float:
    seconds = float(raw)  # ValueError for non-numbers
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise ValueError(raw)
    return seconds


# The long-poll's two reads run in the shared thread pool (thread_sensitive=False) and hand
# their connection back at once: Django's default would give each request a thread of its
# own, alive and idle for the whole wait. Nothing here spans the two reads but the request.
@sync_to_async(thread_sensitive=False)
def _first_read(request, decision_id: str):
    """The ordinary DRF view (auth, scope, rate limit, 404), rendered."""
    try:
        response = DecisionDetailApi.as_view()(request, decision_id=decision_id)
        # A DRF Response renders lazily; an error is already our plain JsonResponse.
        return response.render() if hasattr(response, "render") else response
    finally:
        connections.close_all()


@sync_to_async(thread_sensitive=False)
def _final_read(api_key, decision_id: str) -> HttpResponse:
    try:
        decision = selectors.decision_get(organization_id=api_key.organization_id, decision_id=decision_id)
        return HttpResponse(
            JSONRenderer().render(DecisionOutput(decision).data), content_type="application/json"
        )
    finally:
        connections.close_all()


def _release_request_thread() -> None:
    """Django's ASGI handler gives each request a thread of its own for sync code (signal
    receivers) and keeps it until the response is sent: a thousand waiters would be a thousand
    idle threads. Let it go for the wait; the next sync call starts a fresh one. asgiref has no
    public API for this: should its internals change, this does nothing (the test for it fails)."""
    contexts = getattr(SyncToAsync, "thread_sensitive_context", None)
    executors = getattr(SyncToAsync, "context_to_thread_executor", None)
    context = contexts.get(None) if contexts is not None else None
    executor = executors.pop(context, None) if context is not None and executors is not None else None
    if executor is not None:
        executor.shutdown(wait=False)


@csrf_exempt
async def decision_long_poll(request, decision_id: str):
    """GET /decisions/{id}?wait=N, the long-poll: held until the decision leaves pending or N
    seconds pass. The first read is the ordinary DRF view (auth, scope, rate limit, 404); the
    wait holds no thread and no database connection. The server routes ?wait requests here
    (broker/asgi.py, broker/urls_long_poll.py); without ?wait it is the plain read."""
    raw_wait = request.GET.get("wait")
    if request.method != "GET" or raw_wait is None:
        return await _detail_once(request, decision_id=decision_id)
    try:
        seconds = _parse_wait(raw_wait)
    except ValueError:
        return error_response(
            400,
            "invalid",
            f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS}.",
            {"wait": [f"0 to {MAX_WAIT_SECONDS}"]},
        )
    async with waiting.hub().watching(decision_id) as wait:
        response = await _first_read(request, decision_id)
        if response.status_code != 200 or seconds == 0 or response.data["status"] != "pending":
            return response
        del response  # a thousand waiters should not each hold a rendered page while they wait
        _release_request_thread()
        await wait(seconds)
    # DRF has authenticated the key and put it on the request: read the decision once more.
    return await _final_read(request.user, decision_id)


@csrf_exempt
def decision_detail(request, decision_id: str):
    """GET /decisions/{id} under Django's sync handler, as the server serves the API (WSGI
    behind broker/asgi.py), and the test client. The server sends ?wait to decision_long_poll
    on its event loop; one that arrives here all the same (a WSGI server alone, the test
    client) is answered just as well, holding this thread while it waits."""
    if request.method == "GET" and "wait" in request.GET:
        return async_to_sync(decision_long_poll)(request, decision_id=decision_id)
    return _detail_view(request, decision_id=decision_id)


# The OpenAPI generator documents DRF views by these attributes (set by as_view()): describe
# this wrapper as the DRF view it wraps, wait parameter included.
decision_detail.cls = DecisionDetailApi
decision_detail.initkwargs = {}
