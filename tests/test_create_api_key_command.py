"""`manage.py create_api_key`: how an operator gives an agent its key. Scripts read the key from
the last line of the output, so that line must be the key alone."""

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from organizations.models import ApiKey, Organization
from organizations.services import api_key_hash
from tests.conftest import client_for


def create_api_key(*args: str) -> list[str]:
    out = StringIO()
    call_command("create_api_key", *args, stdout=out)
    return out.getvalue().splitlines()


def test_creates_the_organization_and_prints_the_key_last(db):
    lines = create_api_key("--org", "newco", "--scopes", "decisions,audit")

    raw_key = lines[-1]
    assert re.fullmatch(r"cs_[A-Za-z0-9_-]{40,}", raw_key)
    organization = Organization.objects.get(slug="newco")
    key = ApiKey.objects.get(organization=organization)
    assert key.key_hash == api_key_hash(raw_key)
    assert key.scopes == ["audit", "decisions"]
    # the key is shown only in that last line, never in the explanations before it
    assert all(raw_key not in line for line in lines[:-1])


def test_printed_key_authenticates_against_the_api(db):
    raw_key = create_api_key("--org", "newco", "--scopes", "decisions,audit")[-1]

    response = client_for(raw_key).get("/decisions")

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_default_scope_is_decisions(db):
    raw_key = create_api_key("--org", "newco")[-1]

    assert ApiKey.objects.get(key_hash=api_key_hash(raw_key)).scopes == ["decisions"]
    assert client_for(raw_key).get("/decisions").status_code == 200


def test_existing_organization_is_reused(acme, acme_key):
    raw_key = create_api_key("--org", "acme", "--scopes", "decisions")[-1]

    assert Organization.objects.filter(slug="acme").count() == 1
    new_key = ApiKey.objects.get(key_hash=api_key_hash(raw_key))
    assert new_key.organization == acme
    assert ApiKey.objects.filter(organization=acme).count() == 2
    # the organization keeps its own name
    assert Organization.objects.get(slug="acme").name == "Acme Corp"


def test_key_sees_its_organizations_decisions_only(acme, api):
    decision_id = api.post(
        "/decisions", {"action": "Refund", "approver": "alice@example.com"}, format="json"
    ).json()["id"]
    acme_raw = create_api_key("--org", "acme")[-1]
    newco_raw = create_api_key("--org", "newco")[-1]

    assert client_for(acme_raw).get(f"/decisions/{decision_id}").status_code == 200
    assert client_for(newco_raw).get(f"/decisions/{decision_id}").status_code == 404


@pytest.mark.parametrize(
    "scopes", ["decisions,admin", "superuser", ",", ""], ids=["one-unknown", "unknown", "comma", "empty"]
)
def test_unknown_scope_raises_and_stores_nothing(db, scopes):
    """An operator's typo must not leave a half-made organization behind."""
    with pytest.raises(CommandError):
        create_api_key("--org", "newco", "--scopes", scopes)

    assert ApiKey.objects.count() == 0
    assert not Organization.objects.filter(slug="newco").exists()


def test_unknown_scope_on_an_existing_organization_adds_no_key(acme):
    with pytest.raises(CommandError):
        create_api_key("--org", "acme", "--scopes", "decisions,admin")

    assert ApiKey.objects.filter(organization=acme).count() == 0
