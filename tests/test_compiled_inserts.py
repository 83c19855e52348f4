"""broker.compiled_inserts: bulk_create's rows and instances, from SQL the ORM compiled once."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Value
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from broker.compiled_inserts import MAX_COMPILED_ROWS, CompiledInsert
from decisions.models import Decision
from notifications.models import Delivery
from tests.factories import DecisionFactory
from tests.helpers import field_values

pytestmark = pytest.mark.django_db


def stored(instances) -> list[dict]:
    """The rows as the database has them, without their ids (each insert gets its own)."""
    model = type(instances[0])
    rows = [field_values(model.objects.get(pk=instance.pk)) for instance in instances]
    return [{name: value for name, value in row.items() if name != "id"} for row in rows]


NOW = timezone.now()


def deliveries(decision, count: int, **fields) -> list[Delivery]:
    now = NOW
    return [
        Delivery(
            organization_id=decision.organization_id,
            decision=decision,
            kind=Delivery.Kind.EMAIL,
            purpose=Delivery.Purpose.ASK,
            created_at=now,
            next_attempt_at=now + timedelta(seconds=index),
            enqueued_at=now,
            provider_message_id=f"m{index}",
            **fields,
        )
        for index in range(count)
    ]


def test_rows_and_instances_as_bulk_create_makes_them(acme_key):
    decision = DecisionFactory(api_key=acme_key[0])
    insert = CompiledInsert(Delivery)
    by_the_orm = Delivery.objects.bulk_create(deliveries(decision, 3))

    compiled = insert.create(deliveries(decision, 3))

    assert all(isinstance(d.pk, int) for d in compiled)
    assert len({d.pk for d in compiled + by_the_orm}) == 6
    assert stored(compiled) == stored(by_the_orm)
    assert [field_values(d) | {"id": 0} for d in compiled] == [
        field_values(d) | {"id": 0} for d in by_the_orm
    ]
    assert all(not d._state.adding and d._state.db == "default" for d in compiled)


def test_the_same_shape_again_is_one_statement_and_no_new_compile(acme_key):
    decision = DecisionFactory(api_key=acme_key[0])
    insert = CompiledInsert(Delivery)
    insert.create(deliveries(decision, 2))

    with CaptureQueriesContext(connection) as queries:
        again = insert.create(deliveries(decision, 2))

    assert len(queries) == 1
    assert queries[0]["sql"].startswith('INSERT INTO "notifications_delivery"')
    assert len(insert._compiled) == 1
    assert [d.provider_message_id for d in Delivery.objects.filter(pk__in=[d.pk for d in again])] == [
        "m0",
        "m1",
    ]
    insert.create(deliveries(decision, 1))
    assert len(insert._compiled) == 2  # one row is another shape


def test_a_database_default_is_left_to_the_database_and_read_back(acme_key):
    """The audit event's txid is the database's (DEFAULT in the INSERT), returned as save() would."""
    insert = CompiledInsert(AuditEvent)

    def event(name: str) -> AuditEvent:
        return AuditEvent(
            organization=acme_key[0].organization,
            created_at=timezone.now(),
            event=name,
            actor="test",
            content_hash="0" * 64,
        )

    with transaction.atomic():
        [by_the_orm] = AuditEvent.objects.bulk_create([event("a")])
        [compiled] = insert.create([event("b")])
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()::text::bigint")
            [[txid]] = cursor.fetchall()

    assert compiled.txid == by_the_orm.txid == txid
    assert AuditEvent.objects.get(pk=compiled.pk).txid == txid


def test_a_decision_keeps_its_own_id_and_reads_back_its_database_defaults(acme_key):
    source = DecisionFactory(api_key=acme_key[0], details={"amount": 3})
    copy = Decision.objects.get(pk=source.pk)
    copy.pk = None
    copy.id = "dec_compiled_insert_test"
    copy.idempotency_key = None
    copy.trace_context = {"traceparent": "00-abc"}

    [inserted] = CompiledInsert(Decision).create([copy])

    assert inserted.id == "dec_compiled_insert_test"
    assert inserted.trace_context == {"traceparent": "00-abc"}  # converted from the database's JSON
    expected = field_values(Decision.objects.get(pk=source.pk))
    expected |= {"id": "dec_compiled_insert_test", "trace_context": {"traceparent": "00-abc"}}
    assert field_values(Decision.objects.get(pk="dec_compiled_insert_test")) == expected


def test_an_expression_or_a_large_insert_goes_through_bulk_create(acme_key):
    decision = DecisionFactory(api_key=acme_key[0])
    insert = CompiledInsert(Delivery)

    [with_expression] = insert.create(deliveries(decision, 1, attempts=Value(2)))
    many = insert.create(deliveries(decision, MAX_COMPILED_ROWS + 1))

    assert Delivery.objects.get(pk=with_expression.pk).attempts == 2
    assert Delivery.objects.filter(pk__in=[d.pk for d in many]).count() == MAX_COMPILED_ROWS + 1
    assert insert._compiled == {}
