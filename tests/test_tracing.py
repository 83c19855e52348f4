"""OpenTelemetry traces: the trace an agent starts with `traceparent` runs through its decision,
from POST /decisions to the callback, with a span for the time a person took to answer.

Acme's agent is inside a trace of its own when it asks alice to sign off a refund. Spans are
kept in memory by the SDK's InMemorySpanExporter; the callback lands at a real HTTP receiver
on 127.0.0.1, sent by a real Celery worker. Tracing is off unless the environment asks for
it: the last tests hold that off means nothing stored and no header sent.
"""

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.test import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from broker import tracing
from decisions.models import Decision
from decisions.services import decision_cancel
from notifications.models import Delivery
from notifications.services import delivery_attempt
from tests.conftest import ALICE
from tests.helpers import wait_for
from tests.receiver import receiver_fixture  # noqa: F401

PROJECT = Path(__file__).resolve().parents[1]
ACTION = "Refund order #1042 for $120"
# The agent's own trace: the span that made the HTTP request to Countersign.
AGENT_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
AGENT_SPAN_ID = 0x00F067AA0BA902B7
AGENT_TRACEPARENT = f"00-{AGENT_TRACE_ID:032x}-{AGENT_SPAN_ID:016x}-01"

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans():
    """Tracing on for this test, every finished span kept in memory; off again after."""
    tracing.start(tracer_provider=_PROVIDER)
    try:
        yield _EXPORTER
    finally:
        tracing.stop()
        _EXPORTER.clear()


@pytest.fixture(autouse=True)
def _private_callbacks_allowed(settings):
    settings.CALLBACK_ALLOW_PRIVATE = True  # the receiver listens on 127.0.0.1


def named(exporter: InMemorySpanExporter, name: str) -> list:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def one(exporter: InMemorySpanExporter, name: str):
    return wait_for(lambda: named(exporter, name))[0]


def ancestors(exporter: InMemorySpanExporter, span) -> list[str]:
    """The names of the span's parents that were recorded here, nearest first."""
    by_id = {s.context.span_id: s for s in exporter.get_finished_spans()}
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def traceparent_ids(header: str) -> tuple[int, int]:
    _version, trace_id, span_id, _flags = header.split("-")
    return int(trace_id, 16), int(span_id, 16)


def approve_link(mailoutbox) -> str:
    [message] = [m for m in mailoutbox if m.to == [ALICE]]
    [url] = re.findall(r"^Approve: (https?://\S+)$", message.body, flags=re.MULTILINE)
    return urlsplit(url).path


def alice_confirms(path: str):
    body = urlencode({"confirm": "yes", "note": "Checked the order"})
    return Client().post(path, body, content_type="application/x-www-form-urlencoded")


@pytest.mark.redis
def test_the_agents_trace_runs_from_its_request_through_the_wait_to_the_callback(
    api, spans, celery_worker, mailoutbox, receiver
):
    # given: the agent asks alice from inside its trace, with a callback to the receiver
    response = api.post(
        "/decisions",
        {"action": ACTION, "approver": ALICE, "callback_url": receiver.url("/hook")},
        format="json",
        HTTP_TRACEPARENT=AGENT_TRACEPARENT,
    )
    assert response.status_code == 201, response.content
    decision_id = response.json()["id"]

    # then: the create span is in the agent's trace, under the request's server span, whose
    # parent is the agent's span; its context is what the decision keeps
    create = one(spans, "decision.create")
    assert create.context.trace_id == AGENT_TRACE_ID
    assert create.attributes["countersign.decision.id"] == decision_id
    server = next(s for s in spans.get_finished_spans() if s.context.span_id == create.parent.span_id)
    assert server.kind.name == "SERVER"
    assert server.parent.span_id == AGENT_SPAN_ID
    decision = Decision.objects.get(pk=decision_id)
    assert traceparent_ids(decision.trace_context["traceparent"]) == (AGENT_TRACE_ID, create.context.span_id)

    # when: the worker emails alice, and she approves on the confirm page
    wait_for(lambda: Delivery.objects.filter(decision_id=decision_id, status=Delivery.Status.SENT).exists())
    email_send = one(spans, "email.send")
    assert email_send.context.trace_id == AGENT_TRACE_ID
    assert email_send.parent.span_id == create.context.span_id
    assert alice_confirms(approve_link(mailoutbox)).status_code == 200

    # then: the worker's callback carries a traceparent of the agent's trace, from the span
    # that sent it (httpx's client span, under callback.send)
    [callback] = wait_for(lambda: receiver.requests)
    trace_id, sender_span_id = traceparent_ids(callback.headers["traceparent"])
    assert trace_id == AGENT_TRACE_ID
    callback_send = one(spans, "callback.send")
    sender = next(s for s in spans.get_finished_spans() if s.context.span_id == sender_span_id)
    assert "callback.send" in [sender.name, *ancestors(spans, sender)]
    assert callback_send.parent.span_id == create.context.span_id
    assert callback_send.attributes["countersign.delivery.purpose"] == "outcome"

    # and: the wait is a span of the agent's trace from creation to resolution; the answer
    # is one too, linked to alice's click, which has a trace of its own
    decision.refresh_from_db()
    wait = one(spans, "decision.human_wait")
    assert wait.context.trace_id == AGENT_TRACE_ID
    assert wait.parent.span_id == create.context.span_id
    assert wait.start_time == int(decision.created_at.timestamp() * 1e9)
    assert wait.end_time == int(decision.resolved_at.timestamp() * 1e9)
    assert wait.attributes["countersign.decision.status"] == "approved"
    assert wait.attributes["countersign.via"] == "email"
    answer = one(spans, "decision.answer")
    assert answer.context.trace_id == AGENT_TRACE_ID
    [click] = [link.context for link in answer.links]
    assert click.trace_id != AGENT_TRACE_ID


@pytest.mark.django_db(transaction=True)
def test_without_a_traceparent_the_decision_starts_a_trace_its_cancel_ends(api, spans):
    # given: an agent that does not trace
    response = api.post("/decisions", {"action": ACTION, "approver": ALICE}, format="json")
    decision_id = response.json()["id"]

    # when: it cancels
    assert api.post(f"/decisions/{decision_id}/cancel").status_code == 200

    # then: the create span began a trace, and the wait ended in it, as cancelled
    create = one(spans, "decision.create")
    assert create.attributes["countersign.decision.id"] == decision_id
    wait = one(spans, "decision.human_wait")
    assert wait.context.trace_id == create.context.trace_id
    assert wait.parent.span_id == create.context.span_id
    assert wait.attributes["countersign.decision.status"] == "cancelled"
    assert wait.attributes["countersign.via"] == "api"


def cancel_then_fail(decision_id: str) -> None:
    with transaction.atomic():
        decision_cancel(decision=Decision.objects.get(pk=decision_id), actor="agent")
        raise RuntimeError("something after the cancel failed")


@pytest.mark.django_db(transaction=True)
def test_a_resolution_rolled_back_records_no_wait(api, spans):
    # given: a pending decision
    decision_id = api.post("/decisions", {"action": ACTION, "approver": ALICE}, format="json").json()["id"]

    # when: its cancel fails after the status changed, and the transaction rolls back
    with pytest.raises(RuntimeError):
        cancel_then_fail(decision_id)

    # then: no wait was recorded, and the decision still waits
    assert named(spans, "decision.human_wait") == []
    assert Decision.objects.get(pk=decision_id).status == "pending"


def test_tracing_is_off_by_default_nothing_is_stored_and_the_callback_has_no_traceparent(api, receiver):
    # given: no OTEL_* settings (the test environment has none)
    assert not tracing.is_enabled()

    # when: an agent sends a traceparent, and the decision is cancelled with a callback
    response = api.post(
        "/decisions",
        {"action": ACTION, "approver": ALICE, "callback_url": receiver.url("/hook")},
        format="json",
        HTTP_TRACEPARENT=AGENT_TRACEPARENT,
    )
    decision_id = response.json()["id"]
    api.post(f"/decisions/{decision_id}/cancel")
    delivery = Delivery.objects.get(decision_id=decision_id, kind=Delivery.Kind.CALLBACK)
    delivery_attempt(delivery_id=delivery.pk)

    # then: nothing was kept of the trace, and the callback went without one
    assert Decision.objects.get(pk=decision_id).trace_context == {}
    [callback] = receiver.requests
    assert "traceparent" not in callback.headers


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "countersign"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),  # docker-compose.yml's default
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_the_standard_variables_turn_tracing_on(environ, on):
    assert tracing.wanted(environ) is on


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "'grpc' is not supported"),
    ],
)
def test_settings_it_cannot_honour_stop_start_up_with_a_reason(monkeypatch, environ, says):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=re.escape(says)):
        tracing.start_from_environment()
    assert not tracing.is_enabled()


def test_the_otlp_exporter_sends_spans_where_the_environment_says(receiver):
    # given: a process started with the standard variables, the collector being the receiver
    environ = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url("").rstrip("/"),
        "OTEL_SERVICE_NAME": "countersign-eu",
        "OTEL_TRACES_EXPORTER": "",  # empty: the default, otlp
    }

    # when: it records a span and exits
    subprocess.run([sys.executable, "-c", EXPORT_ONE_SPAN], env=environ, cwd=PROJECT, check=True, timeout=60)

    # then: the span arrived over OTLP/HTTP, named for the service
    [export] = [request for request in receiver.requests if request.path == "/v1/traces"]
    assert export.headers["content-type"] == "application/x-protobuf"
    message = ExportTraceServiceRequest.FromString(export.body)
    [resource_spans] = message.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "countersign-eu"
    assert [span.name for scope in resource_spans.scope_spans for span in scope.spans] == ["probe"]


@pytest.mark.postgres
def test_sql_statements_are_spans_of_the_work_that_ran_them(receiver):
    # given: a process tracing to the receiver, on this test's PostgreSQL database
    database = connection.settings_dict
    environ = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url("").rstrip("/"),
        "DATABASE_URL": f"postgres://{quote(database['USER'])}:{quote(database['PASSWORD'] or '')}"
        f"@{database['HOST']}:{database['PORT']}/{database['NAME']}",
    }

    # when: it reads the decisions inside a span
    subprocess.run([sys.executable, "-c", EXPORT_A_QUERY], env=environ, cwd=PROJECT, check=True, timeout=60)

    # then: the statement is a span (psycopg's instrumentation), a child of that span
    [export] = [request for request in receiver.requests if request.path == "/v1/traces"]
    message = ExportTraceServiceRequest.FromString(export.body)
    spans = [span for rs in message.resource_spans for scope in rs.scope_spans for span in scope.spans]
    [probe] = [span for span in spans if span.name == "probe"]
    [query] = [
        span
        for span in spans
        if any(
            a.key == "db.statement" and "decisions_decision" in a.value.string_value for a in span.attributes
        )
    ]
    assert query.parent_span_id == probe.span_id


def otlp_attributes(span) -> dict[str, str]:
    return {attribute.key: attribute.value.string_value for attribute in span.attributes}


EXPORT_A_QUERY = """
import django
django.setup()
from opentelemetry import trace
from broker import tracing
assert tracing.start_from_environment()
from decisions.models import Decision
tracing.traced("probe")(Decision.objects.count)()
trace.get_tracer_provider().shutdown()
"""


EXPORT_ONE_SPAN = """
import django
django.setup()
from opentelemetry import trace
from broker import tracing
assert tracing.start_from_environment()
tracing.traced("probe")(lambda: None)()
trace.get_tracer_provider().shutdown()  # flushes the batch
"""
