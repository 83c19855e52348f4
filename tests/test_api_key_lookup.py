"""organizations.selectors.api_key_find_active runs SQL compiled once per process: it must
still read the key and its organization afresh on every call, in one query, and build the
same instances the ORM would."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from organizations.models import ApiKey, Organization
from organizations.selectors import api_key_find_active
from organizations.services import api_key_create, api_key_revoke
from tests.helpers import field_values


def test_the_key_and_its_organization_are_what_the_orm_loads(acme, acme_key):
    Organization.objects.filter(pk=acme.pk).update(reminder_points=[0.25, 0.75])
    ApiKey.objects.filter(pk=acme_key[0].pk).update(name="agent")

    found = api_key_find_active(raw_key=acme_key[1])

    expected = ApiKey.objects.select_related("organization").get(pk=acme_key[0].pk)
    assert field_values(found) == field_values(expected)
    assert field_values(found.organization) == field_values(expected.organization)
    assert found.scopes == expected.scopes == ["audit", "decisions"]
    assert found.organization.reminder_points == [0.25, 0.75]
    assert found.created_at.tzinfo is not None
    assert not found._state.adding
    assert found._state.db == expected._state.db


def test_one_query_without_an_order_by_and_the_organization_with_it(acme_key):
    with CaptureQueriesContext(connection) as queries:
        found = api_key_find_active(raw_key=acme_key[1])
        assert found.organization.slug == "acme"  # already loaded: no second query

    assert len(queries) == 1
    assert "ORDER BY" not in queries[0]["sql"].upper()


def test_every_call_reads_the_row_afresh(acme, acme_key):
    api_key_find_active(raw_key=acme_key[1])  # compiled and run once already
    Organization.objects.filter(pk=acme.pk).update(settings_version=41)

    assert api_key_find_active(raw_key=acme_key[1]).organization.settings_version == 41

    api_key_revoke(key=acme_key[0])

    assert api_key_find_active(raw_key=acme_key[1]) is None


@pytest.mark.parametrize("raw", ["", "cs_unknown", "'; DROP TABLE organizations_apikey; --"])
def test_unknown_keys_find_nothing(acme_key, raw):
    assert api_key_find_active(raw_key=raw) is None


def test_each_key_finds_its_own_row(acme, globex):
    keys = [api_key_create(organization=org, scopes=["decisions"]) for org in (acme, acme, globex)]

    for key, raw in keys:
        found = api_key_find_active(raw_key=raw)
        assert (found.pk, found.organization_id) == (key.pk, key.organization_id)
