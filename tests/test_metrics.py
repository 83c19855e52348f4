"""GET /metrics: the figures an operator alerts on, for Prometheus, behind METRICS_TOKEN."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from audit.services import audit_record
from decisions.models import Decision
from decisions.services import decision_answer
from notifications.models import Delivery
from tests.conftest import client_for
from tests.factories import DecisionFactory
from tests.helpers import seal

TOKEN = "scrape-me-" + "x" * 20


@pytest.fixture
def prometheus(settings, db):
    settings.METRICS_TOKEN = TOKEN
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return client


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_decisions_by_status_and_how_long_people_take(prometheus, acme_key):
    answered = DecisionFactory(api_key=acme_key[0])
    DecisionFactory(api_key=acme_key[0], action="Deploy release 4.2")
    decision_answer(request_id=answered.requests.get().pk, choice="approve", via="email")
    Decision.objects.filter(pk=answered.pk).update(created_at=timezone.now() - timedelta(seconds=90))

    figures = scrape(prometheus)

    assert figures[("countersign_decisions", (("status", "pending"),))] == 1
    assert figures[("countersign_decisions", (("status", "approved"),))] == 1
    assert figures[("countersign_decisions", (("status", "expired"),))] == 0
    assert 89 <= figures[("countersign_decision_answer_seconds", (("quantile", "0.5"),))] <= 120


def test_the_outbox_the_clock_and_the_sealer_show_what_is_late(prometheus, acme, acme_key):
    decision = DecisionFactory(api_key=acme_key[0])
    Delivery.objects.filter(decision=decision).update(next_attempt_at=timezone.now() - timedelta(seconds=30))
    Delivery.objects.create(
        organization=acme, decision=decision, kind="callback", purpose="outcome", status="failed"
    )
    Decision.objects.filter(pk=decision.pk).update(next_due_at=timezone.now() - timedelta(seconds=12))

    figures = scrape(prometheus)

    assert figures[("countersign_outbox_pending", (("kind", "email"),))] == 1
    assert figures[("countersign_outbox_pending", (("kind", "callback"),))] == 0
    assert figures[("countersign_outbox_oldest_due_seconds", ())] >= 30
    assert figures[("countersign_callback_failures", ())] == 1
    assert 12 <= figures[("countersign_clock_lateness_seconds", ())] < 60
    assert figures[("countersign_audit_unsealed_events", ())] == 2  # created, and alice asked


def test_nothing_late_is_zero(prometheus):
    figures = scrape(prometheus)

    assert figures[("countersign_outbox_oldest_due_seconds", ())] == 0
    assert figures[("countersign_clock_lateness_seconds", ())] == 0
    assert figures[("countersign_audit_unsealed_events", ())] == 0


def test_without_the_token_it_is_401_and_without_a_token_configured_it_does_not_exist(settings, db):
    settings.METRICS_TOKEN = TOKEN
    wrong = client_for(None)
    wrong.credentials(HTTP_AUTHORIZATION="Bearer guess")

    assert wrong.get("/metrics").status_code == 401
    assert client_for(None).get("/metrics").status_code == 401
    settings.METRICS_TOKEN = ""
    assert client_for(None).get("/metrics").status_code == 404


@pytest.mark.django_db(transaction=True)  # sealing links only committed events
def test_an_unsealed_event_counts_until_the_sealer_links_it(prometheus, acme):
    from django.db import transaction

    with transaction.atomic():
        audit_record(organization_id=acme.pk, event="note.added", actor="system")
    before = scrape(prometheus)
    seal()

    assert before[("countersign_audit_unsealed_events", ())] == 1
    assert scrape(prometheus)[("countersign_audit_unsealed_events", ())] == 0
