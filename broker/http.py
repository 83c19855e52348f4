"""Request-level guards shared by every endpoint: body size, strict JSON, and the database
being unavailable."""

import json
import math

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.utils.decorators import sync_and_async_middleware
from django.utils.deprecation import MiddlewareMixin
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from broker.errors import (
    DATABASE_ERRORS,
    PayloadTooLarge,
    database_unavailable,
    debug_page_for_api_path,
    error_for,
    json_not_found,
)

MAX_JSON_DEPTH = 32


def _oversized_body(request):
    """A 413 from the Content-Length alone, before anything reads the body; else None. Under
    ASGI, broker.asgi_body.BoundedBody has given a chunked body its Content-Length, and cut one
    over the limit at limit + 1 bytes, so this is where every oversized body is answered."""
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
    except ValueError:
        return error_for(request, 400, "bad_request", "Content-Length is not a number.")
    if length > settings.MAX_REQUEST_BODY_BYTES:
        return error_for(
            request, 413, "payload_too_large", "Request body is larger than 1 MiB.", title="Too large"
        )
    return None


@sync_and_async_middleware
def BodySizeLimitMiddleware(get_response):
    # Both flavours, so that under ASGI no request (a long-poll least of all) is pinned to a thread.
    if iscoroutinefunction(get_response):

        async def async_middleware(request):
            return _oversized_body(request) or await get_response(request)

        return async_middleware

    def middleware(request):
        return _oversized_body(request) or get_response(request)

    return middleware


class NotFoundInDebugMiddleware(MiddlewareMixin):
    """With DEBUG on, Django answers an unknown URL with its HTML page listing every URL
    pattern, before handler404 is asked. An agent (or a curl under `make dev`) gets the API's
    JSON 404 all the same; the admin and the outbox keep their pages."""

    def process_response(self, request, response):
        if settings.DEBUG and debug_page_for_api_path(request, response):
            return json_not_found(request)
        return response


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """Any view, API or approval page, that the database fails (gone mid-request, restarting,
    refusing connections) answers 503 with Retry-After, in the shape its caller reads (JSON,
    or a page for approvers), instead of a 500. MiddlewareMixin serves sync and async alike."""

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_ERRORS):
            return database_unavailable(request, exception)
        return None


def _finite_float(text: str) -> float | int:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    # jsonb gives integral numbers back as integers (1e16 -> 10000000000000000, -0.0 -> 0):
    # keep them integers from the start, so action_hash matches the details read back.
    return int(value) if value.is_integer() else value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class UntrustedJSONError(ValueError):
    """The text is not JSON we accept; the message says why, for the client."""


def _check_storable(data) -> None:
    """Refuse what PostgreSQL cannot store or what nobody should send: NUL characters, lone
    surrogates, and nesting deeper than MAX_JSON_DEPTH. Iterative, so depth cannot crash it."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise UntrustedJSONError(f"JSON is nested more than {MAX_JSON_DEPTH} levels deep.")
        if isinstance(value, dict):
            stack.extend((key, depth) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            if "\x00" in value:
                raise UntrustedJSONError("JSON strings must not contain NUL characters.")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise UntrustedJSONError("JSON strings must be valid Unicode.") from None


def parse_untrusted_json(text: str):
    """json.loads for anything that arrives from outside (an API body, a Slack payload): finite
    numbers only, no NaN/Infinity, and nothing _check_storable refuses. Raises UntrustedJSONError,
    never RecursionError, however deep the nesting."""
    try:
        data = json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise UntrustedJSONError(f"Malformed JSON: {exc}") from None
    _check_storable(data)
    return data


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, bounded: reads at most 1 MiB even without a Content-Length, and
    turns every malformed body (including absurd nesting) into a 400, never a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.MAX_REQUEST_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge()
        try:
            return parse_untrusted_json(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None
        except UntrustedJSONError as exc:
            raise ParseError(str(exc)) from None
