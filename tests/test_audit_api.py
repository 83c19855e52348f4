"""GET /audit/events: Acme's compliance key reads Acme's audit trail in chain order, page by
page, filtered by time, decision, event and actor; never sees (or learns of) Globex's; and
nothing without the audit scope."""

import itertools
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import pytest
from django.db import transaction

from audit.chain import GENESIS_HASH
from audit.selectors import sealed_events
from audit.services import audit_record
from decisions.services import decision_answer
from organizations.services import api_key_create
from tests.conftest import ALICE, BOB, client_for
from tests.factories import DecisionFactory
from tests.helpers import seal

# The API lists sealed events (audit/sealing.py), and sealing links only committed ones.
pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def record(organization, *, at: datetime, event: str = "note.added", actor: str = "system", **fields):
    """An event at a known moment, so time filters do not depend on the clock."""
    with patch("audit.services.timezone.now", return_value=at), transaction.atomic():
        return audit_record(organization_id=organization.pk, event=event, actor=actor, **fields)


def answer(decision, address: str, choice: str = "approve", note: str = ""):
    request = decision.requests.get(address=address)
    return decision_answer(
        request_id=request.pk,
        choice=choice,
        note=note,
        via="email",
        ip="203.0.113.7",
        user_agent="Mozilla/5.0 (alice's laptop)",
    )


def events(client, **params) -> list[dict]:
    seal()
    response = client.get("/audit/events", params)
    assert response.status_code == 200, response.json()
    return response.json()["results"]


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == code
    if field:
        assert field in error["fields"], error
    return error


@pytest.fixture
def auditor(acme):
    """Acme's compliance tooling: a key with the audit scope only."""
    return client_for(api_key_create(organization=acme, scopes=["audit"], name="compliance")[1])


# --- the trail ----------------------------------------------------------------------------


def test_events_are_the_organizations_whole_trail_in_chain_order(acme_key, auditor):
    # given alice approves a refund
    decision = DecisionFactory(api_key=acme_key[0])
    answer(decision, ALICE, note="ok by me")

    # when the compliance key reads the trail
    results = events(auditor)

    # then every stored event is there, oldest first, each linked to the one before
    stored = list(sealed_events().filter(organization=acme_key[0].organization).order_by("seq"))
    assert [e["seq"] for e in results] == [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert [e["event"] for e in results] == [e.event for e in stored]
    assert results[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(results):
        assert after["prev_hash"] == before["hash"]
    assert {"decision.created", "approver.asked", "decision.answered", "decision.resolved"} <= {
        e["event"] for e in results
    }


def test_an_event_shows_who_when_what_and_its_parsed_payload(acme_key, auditor):
    decision = DecisionFactory(api_key=acme_key[0], action="Refund order #1042")
    answer(decision, ALICE, note="ok by me")

    answered = next(e for e in events(auditor) if e["event"] == "decision.answered")

    stored = sealed_events().get(organization=acme_key[0].organization, event="decision.answered")
    assert set(answered) == {
        "seq",
        "time",
        "decision",
        "action",
        "event",
        "actor",
        "channel",
        "payload",
        "prev_hash",
        "hash",
        "content_hash",
    }
    assert answered["decision"] == decision.pk
    assert answered["action"] == "Refund order #1042"
    assert answered["actor"] == ALICE
    assert answered["channel"] == "email"
    assert answered["time"] == iso(stored.created_at)
    assert answered["hash"] == stored.hash
    assert answered["payload"]["choice"] == "approve"
    assert answered["payload"]["note"] == "ok by me"
    assert answered["payload"]["ip"] == "203.0.113.7"
    assert answered["payload"]["user_agent"] == "Mozilla/5.0 (alice's laptop)"


def test_an_event_without_a_decision_has_null_decision_and_action(acme, auditor):
    record(acme, at=T0, event="organization.configured", payload={"setting": "timeout"})

    (event,) = events(auditor)

    assert event["decision"] is None
    assert event["action"] is None
    assert event["payload"] == {"setting": "timeout"}


def test_cursor_pagination_walks_every_event_once_in_order(acme, auditor):
    for minute in range(7):
        record(acme, at=T0 + timedelta(minutes=minute), payload={"n": minute})
    seal()

    seen, pages = [], 0
    response = auditor.get("/audit/events", {"limit": 3})
    while True:
        assert response.status_code == 200
        page = response.json()
        pages += 1
        assert len(page["results"]) <= 3
        seen += [e["seq"] for e in page["results"]]
        if not page["next"]:
            break
        response = auditor.get(page["next"])

    assert pages == 3
    assert seen == [1, 2, 3, 4, 5, 6, 7]


def test_pages_keep_the_filters(acme, auditor):
    for minute in range(4):
        record(acme, at=T0 + timedelta(minutes=minute), event="a" if minute % 2 else "b")
    seal()

    first = auditor.get("/audit/events", {"event": "a", "limit": 1}).json()
    second = auditor.get(first["next"]).json()

    assert [e["seq"] for e in first["results"] + second["results"]] == [2, 4]
    assert second["next"] is None


# --- filters ------------------------------------------------------------------------------


@pytest.fixture
def three_hours(acme):
    """Events at 12:00, 13:00 and 14:00."""
    return [record(acme, at=T0 + timedelta(hours=h), payload={"hour": 12 + h}) for h in range(3)]


def test_from_is_inclusive_and_to_is_exclusive(auditor, three_hours):
    results = events(auditor, **{"from": iso(T0 + timedelta(hours=1)), "to": iso(T0 + timedelta(hours=2))})

    assert [e["payload"]["hour"] for e in results] == [13]


def test_from_alone_and_to_alone(auditor, three_hours):
    assert [e["payload"]["hour"] for e in events(auditor, **{"from": iso(T0 + timedelta(hours=1))})] == [
        13,
        14,
    ]
    assert [e["payload"]["hour"] for e in events(auditor, to=iso(T0 + timedelta(hours=1)))] == [12]


def test_times_with_an_offset_are_converted_and_without_one_are_utc(auditor, three_hours):
    # 14:00+01:00 is 13:00 UTC
    assert [e["payload"]["hour"] for e in events(auditor, **{"from": "2030-01-01T14:00:00+01:00"})] == [
        13,
        14,
    ]
    assert [e["payload"]["hour"] for e in events(auditor, **{"from": "2030-01-01T13:00:00"})] == [13, 14]


def test_a_whole_day_by_dates(auditor, three_hours, acme):
    record(acme, at=T0 + timedelta(days=1), payload={"hour": "next day"})

    results = events(auditor, **{"from": "2030-01-01", "to": "2030-01-02"})

    assert [e["payload"]["hour"] for e in results] == [12, 13, 14]


def test_from_equal_to_to_is_empty_not_an_error(auditor, three_hours):
    assert events(auditor, **{"from": iso(T0), "to": iso(T0)}) == []


def test_decision_filter_gives_that_decisions_events_only(acme_key, auditor):
    refund, deploy = (
        DecisionFactory(api_key=acme_key[0], action="Refund"),
        DecisionFactory(api_key=acme_key[0], action="Deploy"),
    )
    answer(refund, ALICE)

    results = events(auditor, decision=refund.pk)

    assert results
    assert {e["decision"] for e in results} == {refund.pk}
    assert len(results) == sealed_events().filter(decision=refund).count()
    assert {e["decision"] for e in events(auditor, decision=deploy.pk)} == {deploy.pk}


def test_event_and_actor_filters(acme_key, auditor):
    decision = DecisionFactory(api_key=acme_key[0], approvers=(ALICE, BOB))
    answer(decision, BOB, choice="deny", note="no")

    answered = events(auditor, event="decision.answered")
    by_bob = events(auditor, actor=BOB)
    both = events(auditor, event="decision.resolved", actor=BOB)

    assert [(e["event"], e["actor"]) for e in answered] == [("decision.answered", BOB)]
    assert {e["actor"] for e in by_bob} == {BOB}
    assert {e["event"] for e in by_bob} == {"decision.answered", "decision.resolved"}
    assert [(e["event"], e["actor"]) for e in both] == [("decision.resolved", BOB)]
    assert events(auditor, actor="mallory@example.com") == []


# --- isolation ----------------------------------------------------------------------------


def test_another_organizations_events_are_never_listed(acme_key, globex_key, auditor):
    DecisionFactory(api_key=acme_key[0], action="Acme refund")
    DecisionFactory(api_key=globex_key[0], action="Globex payroll run")

    results = events(auditor)

    assert results
    assert {e["action"] for e in results} == {"Acme refund"}
    acme_ids = set(
        sealed_events().filter(organization=acme_key[0].organization).values_list("hash", flat=True)
    )
    assert {e["hash"] for e in results} == acme_ids


def test_another_organizations_decision_id_is_an_empty_result_not_an_error(acme_key, globex_key, auditor):
    """No leak: Globex's decision looks exactly like one that does not exist."""
    globex_decision = DecisionFactory(api_key=globex_key[0], action="Globex payroll run")

    response = auditor.get("/audit/events", {"decision": globex_decision.pk})
    unknown = auditor.get("/audit/events", {"decision": "dec_" + "0" * 26})

    assert response.status_code == 200
    assert response.json()["results"] == []
    assert response.json() == unknown.json()


def test_sequence_numbers_are_per_organization(acme, globex, auditor):
    record(globex, at=T0)
    record(globex, at=T0)
    record(acme, at=T0)

    assert [e["seq"] for e in events(auditor)] == [1]


# --- scope and auth -----------------------------------------------------------------------


def test_a_key_without_the_audit_scope_is_403(acme):
    decisions_only = client_for(api_key_create(organization=acme, scopes=["decisions"])[1])

    error = assert_error(decisions_only.get("/audit/events"), 403, "permission_denied")

    assert "audit" in error["message"]


def test_no_key_is_401(db):
    response = client_for(None).get("/audit/events")

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_key_with_both_scopes_may_read(api, acme):
    record(acme, at=T0)

    assert len(events(api)) == 1


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"from": "2030-02-30"}, "from"),
        ({"to": "2030-13-01T00:00:00Z"}, "to"),
        ({"from": ""}, "from"),
        ({"to": "9999-12-31T23:59:59-01:00"}, "to"),
        ({"from": "2030-01-02", "to": "2030-01-01"}, "from"),
        ({"status": "approved"}, "status"),
        ({"created_after": "2030-01-01"}, "created_after"),
        ({"decision": "dec_\x00"}, "decision"),
        ({"actor": "x" * 321}, "actor"),
        ({"event": ""}, "event"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "cD1hYmM="}, "cursor"),  # base64 of "p=abc": a position that is not a seq
    ],
    ids=[
        "word-date",
        "no-such-day",
        "no-such-month",
        "empty-from",
        "overflowing-offset",
        "from-after-to",
        "unknown-filter",
        "decisions-filter-name",
        "nul",
        "long-actor",
        "empty-event",
        "limit-zero",
        "limit-too-big",
        "limit-word",
        "garbage-cursor",
        "cursor-with-a-bad-position",
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(auditor, acme, params, field):
    record(acme, at=T0)

    assert_error(auditor.get("/audit/events", params), 400, "invalid", field)
