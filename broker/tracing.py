"""OpenTelemetry traces: one trace per decision, from the agent's request to its callback.

Off unless the standard OTEL_* variables ask for it (see `wanted`). Off, every helper here
returns at its first line: no span is made, nothing is stored, nothing is instrumented.

On, the trace an agent's `traceparent` starts is the decision's trace: POST /decisions is
its `decision.create` span, and the context of that span is stored with the decision
(`Decision.trace_context`, a W3C carrier). Whatever happens to the decision later, in another
request or a Celery worker, is recorded in that trace from the stored context: each
notification and callback send, each answer, and `decision.human_wait`, from creation to
resolution. The callback POST carries a `traceparent` of that trace (httpx's instrumentation
adds it to every outgoing request), so the agent's own trace goes on where it left off. The
span of the request or task that did the work (the approver's click, the clock's tick) is
linked, not parent: it belongs to a trace of its own.
"""

import functools
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from opentelemetry import propagate, trace

_tracer: trace.Tracer | None = None  # set while tracing is on
_instrumentors: list[Any] = []


def is_enabled() -> bool:
    return _tracer is not None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: OTEL_TRACES_EXPORTER set to an exporter
    other than `none`, or an OTLP endpoint given; never with OTEL_SDK_DISABLED=true."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def start_from_environment() -> bool:
    """Turn tracing on if the environment asks for it (see `wanted`); called once by each
    entry point (ASGI, WSGI, Celery worker and beat). Returns whether tracing is on."""
    if is_enabled() or not wanted():
        return is_enabled()
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win; "countersign" is the default name.
    attributes = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in attributes
    provider = TracerProvider(resource=Resource.create({} if named else {SERVICE_NAME: "countersign"}))
    for exporter in _exporters_from_environment():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    start(tracer_provider=provider)
    return True


def _exporters_from_environment() -> list[Any]:
    listed = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",")
    names = [name.strip() for name in listed if name.strip()]
    exporters = []
    for name in names:
        if name == "otlp":
            exporters.append(_otlp_exporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        else:
            raise ImproperlyConfigured(
                f"Environment variable OTEL_TRACES_EXPORTER={name!r} is invalid: use otlp, console or none."
            )
    return exporters


def _otlp_exporter():
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    )
    if protocol != "http/protobuf":
        raise ImproperlyConfigured(
            f"OTLP protocol {protocol!r} is not supported: Countersign exports over http/protobuf."
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # It reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT, … itself.
    return OTLPSpanExporter()


def start(*, tracer_provider) -> None:
    """Turn tracing on with this provider, and instrument Django (a server span per request,
    its parent the request's `traceparent`), Celery (a span per task), httpx (a client span
    per outgoing request, which carries `traceparent` on) and psycopg (a span per SQL
    statement, on connections opened from now on). Tests call it with a provider that keeps
    spans in memory."""
    global _tracer
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    instrumentors = (
        DjangoInstrumentor(),
        CeleryInstrumentor(),
        HTTPXClientInstrumentor(),
        PsycopgInstrumentor(),
    )
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=tracer_provider)
        _instrumentors.append(instrumentor)
    _tracer = tracer_provider.get_tracer("countersign")


def stop() -> None:
    """Turn tracing off again and remove the instrumentation (for tests)."""
    global _tracer
    while _instrumentors:
        _instrumentors.pop().uninstrument()
    _tracer = None


# --- spans -------------------------------------------------------------------------------


def traced(name: str, *, attributes: Callable[[Any], dict] | None = None):
    """Run the function in a span `name`, a child of the current span (for a service called
    from a request: the request's server span). `attributes(result)` describes the result."""

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if _tracer is None:
                return function(*args, **kwargs)
            with _tracer.start_as_current_span(name) as span:
                result = function(*args, **kwargs)
                if attributes is not None:
                    span.set_attributes(attributes(result))
                return result

        return wrapper

    return decorate


def current_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, maybe `tracestate`), to store
    with a decision; {} while tracing is off."""
    if _tracer is None:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _link_to_current() -> list[trace.Link]:
    here = trace.get_current_span().get_span_context()
    return [trace.Link(here)] if here.is_valid else []


@contextmanager
def in_decision_trace(decision, name: str, attributes: dict | None = None) -> Iterator[None]:
    """Run the block in a span `name` of the decision's trace (its stored context), linked to
    the span the work runs in now (a task's, a request's). Exceptions are recorded on it."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(
        name,
        context=propagate.extract(decision.trace_context or {}),
        links=_link_to_current(),
        attributes={"countersign.decision.id": decision.pk, **(attributes or {})},
    ):
        yield


def _nanoseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def record_on_commit(
    decision, name: str, *, start: datetime, end: datetime | None = None, attributes: dict | None = None
) -> None:
    """A span `name` in the decision's trace from `start` to `end` (else the commit of the
    current transaction), recorded once that transaction commits; nothing if it rolls back."""
    if _tracer is None:
        return
    tracer, context = _tracer, propagate.extract(decision.trace_context or {})
    links = _link_to_current()
    attributes = {"countersign.decision.id": decision.pk, **(attributes or {})}

    def record() -> None:
        span = tracer.start_span(
            name, context=context, links=links, attributes=attributes, start_time=_nanoseconds(start)
        )
        span.end(end_time=_nanoseconds(end) if end else None)

    transaction.on_commit(record, robust=True)


def record_human_wait(decision) -> None:
    """`decision.human_wait`: from the decision's creation to its resolution (recorded once
    the resolution commits), with how it ended."""
    if _tracer is None:
        return
    via = (decision.outcome or {}).get("via", "")
    record_on_commit(
        decision,
        "decision.human_wait",
        start=decision.created_at,
        end=decision.resolved_at,
        attributes={"countersign.decision.status": decision.status, "countersign.via": via},
    )
