"""broker.compiled_reads: the ORM's SQL compiled once, and the same instances the ORM builds,
here for the outbox's claimed delivery (four tables, one of them LEFT JOINed)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from broker.compiled_reads import CompiledRead
from decisions.models import ApprovalRequest
from notifications.models import Delivery
from notifications.services import _claimed
from tests.factories import DecisionFactory
from tests.helpers import field_values

pytestmark = pytest.mark.django_db


def orm_read(pk: int) -> Delivery:
    return Delivery.objects.select_related("decision", "request", "organization").get(pk=pk)


def assert_as_the_orm_reads(found: Delivery, expected: Delivery) -> None:
    assert field_values(found) == field_values(expected)
    assert field_values(found.decision) == field_values(expected.decision)
    assert field_values(found.organization) == field_values(expected.organization)
    if expected.request is None:
        assert found.request is None
    else:
        assert field_values(found.request) == field_values(expected.request)
    assert not found._state.adding
    assert found._state.db == expected._state.db


def test_an_approvers_delivery_and_everything_joined_to_it(acme_key):
    decision = DecisionFactory(api_key=acme_key[0], details={"amount": 12.5, "lines": [1, 2]})
    delivery = Delivery.objects.get(decision=decision, kind=Delivery.Kind.EMAIL)

    with CaptureQueriesContext(connection) as queries:
        found = _claimed.one(delivery.pk)
        assert found.request.address == "alice@example.com"  # loaded with it
        assert found.decision.details == {"amount": 12.5, "lines": [1, 2]}

    assert len(queries) == 1
    assert_as_the_orm_reads(found, orm_read(delivery.pk))


def test_a_delivery_without_a_request_reads_as_none(acme_key):
    decision = DecisionFactory(api_key=acme_key[0])
    callback = Delivery.objects.create(
        organization=decision.organization,
        decision=decision,
        request=None,
        kind=Delivery.Kind.CALLBACK,
        purpose=Delivery.Purpose.OUTCOME,
    )

    assert_as_the_orm_reads(_claimed.one(callback.pk), orm_read(callback.pk))


def test_each_call_reads_afresh_and_a_missing_row_is_none(acme_key):
    decision = DecisionFactory(api_key=acme_key[0])
    delivery = Delivery.objects.get(decision=decision, kind=Delivery.Kind.EMAIL)
    _claimed.one(delivery.pk)
    ApprovalRequest.objects.filter(pk=delivery.request_id).update(note="changed")

    assert _claimed.one(delivery.pk).request.note == "changed"
    assert _claimed.one(delivery.pk + 1000) is None


def test_a_value_the_query_binds_that_is_not_a_placeholder_is_refused(acme_key):
    read = CompiledRead(Delivery, lambda pk: Delivery.objects.filter(pk=pk, attempts=3), -1)

    with pytest.raises(RuntimeError, match="placeholder"):
        read.all(1)
