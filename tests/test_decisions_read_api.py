"""GET /decisions/{id} and GET /decisions: Acme's agent reads its own decisions, newest first,
page by page, and never sees (or learns of) Globex's."""

from datetime import UTC, datetime, timedelta

import pytest

from decisions.models import Decision, Status
from tests.conftest import ALICE, BOB

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def create(client, action: str = "Refund order #1042", **fields) -> str:
    if not {"approver", "approvers", "stages"} & set(fields):
        fields["approver"] = ALICE
    response = client.post("/decisions", {"action": action, **fields}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def created_at(decision_id: str, moment: datetime) -> None:
    """Place a decision at a known moment, so ordering and filters do not depend on the clock."""
    Decision.objects.filter(pk=decision_id).update(created_at=moment)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def assert_not_found(response):
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert set(error) == {"code", "message", "fields"}


# --- GET /decisions/{id} --------------------------------------------------------------------


def test_get_returns_the_decision_with_its_requests(api):
    decision_id = create(
        api,
        "Deploy release 4.2",
        approvers=[ALICE, "slack:U123ABC"],
        details={"service": "billing"},
        metadata={"thread_id": "t-1"},
    )

    response = api.get(f"/decisions/{decision_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == decision_id
    assert body["status"] == "pending"
    assert body["action"] == "Deploy release 4.2"
    assert body["details"] == {"service": "billing"}
    assert body["metadata"] == {"thread_id": "t-1"}
    assert body["outcome"] is None
    assert [(r["address"], r["channel"], r["state"]) for r in body["requests"]] == [
        (ALICE, "email", "pending"),
        ("slack:U123ABC", "slack", "pending"),
    ]


def test_get_returns_the_same_object_as_create(api):
    created = api.post("/decisions", {"action": "Refund", "approver": ALICE}, format="json").json()

    fetched = api.get(f"/decisions/{created['id']}").json()

    assert fetched == created


def test_unknown_decision_is_404_json(api):
    assert_not_found(api.get("/decisions/dec_" + "0" * 26))


@pytest.mark.parametrize(
    "path",
    [
        "/decisions/nope",
        "/decisions/dec_%00",
        "/decisions/dec_",
        "/decisions/DEC_ABC",
        "/decisions/dec_a%2Fb",
    ],
    ids=["word", "nul", "empty-suffix", "uppercase", "encoded-slash"],
)
def test_malformed_decision_id_is_404_json(api, path):
    assert_not_found(api.get(path))


def test_another_organizations_decision_is_404_not_403(api, globex_api):
    """Tenant isolation: Acme's key cannot even learn that Globex's decision exists."""
    globex_decision = create(globex_api, "Globex payroll run")

    response = api.get(f"/decisions/{globex_decision}")

    assert_not_found(response)
    assert globex_api.get(f"/decisions/{globex_decision}").status_code == 200


# --- GET /decisions -----------------------------------------------------------------------


def test_list_is_newest_first(api):
    ids = [create(api, f"Refund order #{n}") for n in range(3)]
    for offset, decision_id in enumerate(ids):
        created_at(decision_id, T0 + timedelta(minutes=offset))

    response = api.get("/decisions")

    assert response.status_code == 200
    assert [d["id"] for d in response.json()["results"]] == list(reversed(ids))


def test_list_items_are_full_decision_objects(api):
    decision_id = create(api, "Refund order #1042", approvers=[ALICE, BOB])

    item = api.get("/decisions").json()["results"][0]

    assert item == api.get(f"/decisions/{decision_id}").json()


def test_cursor_pagination_walks_every_decision_once(api):
    ids = [create(api, f"Refund order #{n}") for n in range(7)]
    for offset, decision_id in enumerate(ids):
        created_at(decision_id, T0 + timedelta(minutes=offset))

    seen, pages = [], 0
    response = api.get("/decisions", {"limit": 3})
    while True:
        assert response.status_code == 200
        page = response.json()
        pages += 1
        assert len(page["results"]) <= 3
        seen += [d["id"] for d in page["results"]]
        if not page["next"]:
            break
        response = api.get(page["next"])

    assert pages == 3
    assert seen == list(reversed(ids))  # newest first, no duplicates, none missing


def test_pagination_is_stable_when_a_decision_is_created_meanwhile(api):
    """A cursor, not an offset: a new decision arriving between pages does not shift the
    next page, so nothing is seen twice."""
    ids = [create(api, f"Refund order #{n}") for n in range(4)]
    for offset, decision_id in enumerate(ids):
        created_at(decision_id, T0 + timedelta(minutes=offset))
    first = api.get("/decisions", {"limit": 2}).json()

    newcomer = create(api, "Refund order #new")
    created_at(newcomer, T0 + timedelta(hours=1))
    second = api.get(first["next"]).json()

    assert [d["id"] for d in first["results"]] == [ids[3], ids[2]]
    assert [d["id"] for d in second["results"]] == [ids[1], ids[0]]


def test_filter_by_status(api):
    pending = create(api, "Refund order #1")
    cancelled = create(api, "Refund order #2")
    assert api.post(f"/decisions/{cancelled}/cancel").status_code == 200

    only_cancelled = api.get("/decisions", {"status": "cancelled"}).json()["results"]
    only_pending = api.get("/decisions", {"status": "pending"}).json()["results"]
    none_approved = api.get("/decisions", {"status": "approved"}).json()["results"]

    assert [d["id"] for d in only_cancelled] == [cancelled]
    assert [d["id"] for d in only_pending] == [pending]
    assert none_approved == []


def test_filter_by_created_after_and_before(api):
    early, middle, late = (create(api, f"Refund order #{n}") for n in range(3))
    created_at(early, T0)
    created_at(middle, T0 + timedelta(hours=1))
    created_at(late, T0 + timedelta(hours=2))

    after = api.get("/decisions", {"created_after": iso(T0 + timedelta(minutes=30))}).json()["results"]
    before = api.get("/decisions", {"created_before": iso(T0 + timedelta(minutes=90))}).json()["results"]
    between = api.get(
        "/decisions",
        {"created_after": iso(T0 + timedelta(minutes=30)), "created_before": iso(T0 + timedelta(minutes=90))},
    ).json()["results"]

    assert [d["id"] for d in after] == [late, middle]
    assert [d["id"] for d in before] == [middle, early]
    assert [d["id"] for d in between] == [middle]


def test_created_filters_accept_an_offset(api):
    decision_id = create(api)
    created_at(decision_id, T0)

    # 13:30 in Paris is 12:30 UTC: after T0
    response = api.get("/decisions", {"created_before": "2030-01-01T13:30:00+01:00"})

    assert response.status_code == 200
    assert [d["id"] for d in response.json()["results"]] == [decision_id]
    assert api.get("/decisions", {"created_after": "2030-01-01T13:30:00+01:00"}).json()["results"] == []


def test_filters_combine_with_pagination(api):
    ids = [create(api, f"Refund order #{n}") for n in range(5)]
    for offset, decision_id in enumerate(ids):
        created_at(decision_id, T0 + timedelta(minutes=offset))
    Decision.objects.filter(pk__in=ids[:2]).update(status=Status.EXPIRED)

    first = api.get("/decisions", {"status": "pending", "limit": 2}).json()
    second = api.get(first["next"]).json()

    assert [d["id"] for d in first["results"] + second["results"]] == [ids[4], ids[3], ids[2]]
    assert second["next"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"status": "PENDING"}, "status"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2030-13-45T00:00:00Z"}, "created_before"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"sort": "oldest"}, "sort"),
    ],
    ids=[
        "status-unknown",
        "status-uppercase",
        "created_after-words",
        "created_before-impossible-date",
        "limit-0",
        "limit-negative",
        "limit-over-200",
        "limit-word",
        "unknown-parameter",
    ],
)
def test_bad_filter_values_are_400(api, params, field):
    response = api.get("/decisions", params)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]


@pytest.mark.parametrize(
    "cursor", ["garbage", "cD0yMDMw", "%00", "a" * 500], ids=["word", "base64", "nul", "long"]
)
def test_invalid_cursor_is_400(api, cursor):
    create(api)

    response = api.get("/decisions", {"cursor": cursor})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "cursor" in error["fields"]


def test_another_organizations_decisions_are_never_listed(api, globex_api):
    acme_ids = {create(api, "Acme refund") for _ in range(2)}
    globex_ids = {create(globex_api, "Globex payroll") for _ in range(3)}

    acme_seen = {d["id"] for d in api.get("/decisions", {"limit": 200}).json()["results"]}
    globex_seen = {d["id"] for d in globex_api.get("/decisions", {"limit": 200}).json()["results"]}

    assert acme_seen == acme_ids
    assert globex_seen == globex_ids


def test_globex_cursor_does_not_reveal_its_decisions_to_acme(api, globex_api):
    """A cursor encodes a position, not a tenant: replayed with Acme's key it shows Acme's."""
    for n in range(3):
        created_at(create(globex_api, f"Globex payroll #{n}"), T0 + timedelta(minutes=n))
    acme_decision = create(api, "Acme refund")
    created_at(acme_decision, T0 - timedelta(days=1))
    globex_next = globex_api.get("/decisions", {"limit": 1}).json()["next"]

    results = api.get(globex_next).json()["results"]

    assert [d["id"] for d in results] == [acme_decision]


def test_empty_list(api):
    body = api.get("/decisions").json()

    assert body["results"] == []
    assert body["next"] is None
