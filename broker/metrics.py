"""GET /metrics: Prometheus figures an operator alerts on, read from the database at scrape time.

  countersign_decisions{status}                       decisions by status
  countersign_decision_answer_seconds{quantile}       time from creation to a person's answer,
                                                      decisions answered in the last hour
  countersign_outbox_pending{kind}                    emails, Slack messages, callbacks waiting
  countersign_outbox_oldest_due_seconds               how long the oldest due one has waited
  countersign_callback_failures                       callbacks given up on
  countersign_clock_lateness_seconds                  how late the most overdue reminder,
                                                      escalation or deadline is (0: none due)
  countersign_audit_unsealed_events                   audit events the sealer has yet to link
  countersign_audit_oldest_unsealed_seconds           and how old the oldest is

Every query uses an index (pending decisions and deliveries are partial indexes; unsealed
events are searched from the sealer's last horizon), except the status count, one GROUP BY a
scrape. Off unless METRICS_TOKEN is set; Prometheus sends it as a bearer token
(`authorization: {credentials: …}` in its scrape config).
"""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from audit.selectors import unsealed_events
from broker.errors import error_response, json_not_found

ANSWER_WINDOW = timedelta(hours=1)
ANSWER_SAMPLE = 10_000
QUANTILES = (0.5, 0.9, 0.99)
NOT_A_PERSON = ("timeout", "policy")


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class CountersignCollector:
    def collect(self):
        from decisions.models import Decision, Status
        from notifications.models import Delivery

        now = timezone.now()
        by_status = dict(Decision.objects.order_by().values_list("status").annotate(n=Count("pk")))
        decisions = GaugeMetricFamily("countersign_decisions", "Decisions by status", labels=["status"])
        for status in Status.values:
            decisions.add_metric([status], by_status.get(status, 0))
        yield decisions

        answered = (
            Decision.objects.filter(resolved_at__gte=now - ANSWER_WINDOW)
            .exclude(outcome__via__in=NOT_A_PERSON)
            .exclude(outcome__isnull=True)
            .values_list("created_at", "resolved_at")[:ANSWER_SAMPLE]
        )
        waits = sorted((resolved - created).total_seconds() for created, resolved in answered if resolved)
        answer = GaugeMetricFamily(
            "countersign_decision_answer_seconds",
            "Creation to a person's answer, decisions answered in the last hour",
            labels=["quantile"],
        )
        for q in QUANTILES:
            answer.add_metric([str(q)], _quantile(waits, q) if waits else 0.0)
        yield answer

        pending = Delivery.objects.filter(status=Delivery.Status.PENDING)
        by_kind = dict(pending.order_by().values_list("kind").annotate(n=Count("pk")))
        outbox = GaugeMetricFamily(
            "countersign_outbox_pending", "Deliveries waiting to go out", labels=["kind"]
        )
        # Every kind the outbox knows, and any channel's kind that has rows waiting (a channel is
        # a registry entry, not a Delivery.Kind).
        for kind in sorted({*Delivery.Kind.values, *by_kind}):
            outbox.add_metric([kind], by_kind.get(kind, 0))
        yield outbox
        oldest_due = pending.filter(next_attempt_at__lte=now).aggregate(at=Min("next_attempt_at"))["at"]
        yield GaugeMetricFamily(
            "countersign_outbox_oldest_due_seconds",
            "How long the oldest due delivery has waited",
            value=(now - oldest_due).total_seconds() if oldest_due else 0.0,
        )
        yield GaugeMetricFamily(
            "countersign_callback_failures",
            "Callbacks given up on after every retry",
            value=Delivery.objects.filter(kind=Delivery.Kind.CALLBACK, status=Delivery.Status.FAILED).count(),
        )

        overdue = Decision.objects.filter(status=Status.PENDING, next_due_at__lte=now).aggregate(
            at=Min("next_due_at")
        )["at"]
        yield GaugeMetricFamily(
            "countersign_clock_lateness_seconds",
            "How late the most overdue reminder, escalation or deadline is",
            value=(now - overdue).total_seconds() if overdue else 0.0,
        )

        unsealed = unsealed_events().aggregate(n=Count("pk"), at=Min("created_at"))
        yield GaugeMetricFamily(
            "countersign_audit_unsealed_events",
            "Audit events the sealer has yet to link",
            value=unsealed["n"],
        )
        yield GaugeMetricFamily(
            "countersign_audit_oldest_unsealed_seconds",
            "Age of the oldest audit event the sealer has yet to link",
            value=(now - unsealed["at"]).total_seconds() if unsealed["at"] else 0.0,
        )


def metrics(request) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        return json_not_found(request)
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not secrets.compare_digest(offered.encode(), token.encode()):
        return error_response(401, "not_authenticated", "GET /metrics needs METRICS_TOKEN as a bearer token.")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CountersignCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
