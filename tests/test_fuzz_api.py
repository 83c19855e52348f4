"""Fuzzing the agent API against its own description: schemathesis reads /openapi.json from the
app and throws generated requests, valid and invalid, at every operation with Acme's key.

CONTRACT: no input ever produces a 500, and every answer — decision objects, pages, errors,
the CSV export — is what /openapi.json says it is.

The requests go over HTTP to the ASGI app served by uvicorn in a thread of this process (as in
production: one event loop that outlives requests), each with a timeout, so a request that
never answers fails its test instead of holding up CI. Deterministic for CI: hypothesis is
derandomized, keeps no example database, and stops at MAX_EXAMPLES per operation. Nothing
leaves for a broker (a created decision's deliveries stay in the outbox).
"""

import asyncio
import contextlib
import itertools
import threading
import time
from datetime import UTC, timedelta

import hypothesis
import pytest
import redis.asyncio
import requests
import schemathesis
import uvicorn
from django.db.models import F
from django.test import Client
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from broker.asgi import application
from decisions.models import ApproverGroup, Decision, Policy
from decisions.routing import expand_addresses
from decisions.serializers import MAX_TIMEOUT_MINUTES
from decisions.services import (
    decision_answer,
    decision_cancel,
    decision_expire,
)
from decisions.services import resolve as decision_services
from organizations.services import api_key_create, organization_get_or_create
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import DecisionFactory
from tests.helpers import keep_published_deliveries, seal
from tests.smtp_sink import free_port

MAX_EXAMPLES = 30
# The longest a request may take: a long-poll holds at most 60 s.
REQUEST_TIMEOUT = 75
PUBLIC_CALLBACK = "https://93.184.215.14/hook"

# Loaded once, at collection, from the app itself: what a client downloading it would get.
RAW_SCHEMA = Client(HTTP_HOST="localhost").get("/openapi.json").json()
schema = schemathesis.openapi.from_dict(RAW_SCHEMA)

# What "every response matches the schema" means, check by check.
RESPONSE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_api():
    """The ASGI app under uvicorn, in a daemon thread of this process: its base URL."""
    port = free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, lifespan="off", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def quiet_outbox(monkeypatch, settings):
    """Deliveries stay in the outbox: their tasks are not published to the test run's broker,
    which other runs on this machine may share; nor are long-poll announcements. Long-polls
    wait on the database re-check alone (the Redis subscription has a test of its own)."""
    published = keep_published_deliveries(monkeypatch)
    monkeypatch.setattr(decision_services, "publish_resolution", lambda decision_id: None)
    settings.LONGPOLL_REDIS_URL = ""
    return published


@pytest.fixture
def acme_agent(transactional_db, quiet_outbox):
    """Acme's key with both scopes. transactional_db: the server's threads must see it."""
    acme = organization_get_or_create(slug="acme", name="Acme Corp")[0]
    return api_key_create(organization=acme, scopes=["decisions", "audit"], name="fuzzing agent")


def auth(raw_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_key}"}


def _answer(decision: Decision, address: str, **answer) -> Decision:
    request = decision.requests.get(address=address)
    return decision_answer(request_id=request.pk, via="email", **answer)


@pytest.fixture
def acme_decisions(acme_agent) -> dict[str, str]:
    """One of Acme's decisions in every state and shape the object can take, by name → id:
    what lists, audit pages and exports must describe correctly."""
    key = acme_agent[0]
    Policy.objects.create(
        organization=key.organization,
        name="small-refunds",
        conditions=[{"field": "details.amount", "op": "lt", "value": 50}],
        action=Policy.Action.APPROVE,
    )
    made = {
        "pending": DecisionFactory(
            api_key=key,
            action="Refund order #1042",
            context="Customer says the parcel never came.",
            details={"amount": 120, "currency": "EUR", "customer": {"name": "Ada", "vip": True}},
            stages=[{"approvers": [ALICE, BOB, "slack:U123ABC"], "quorum": 2}],
            urgency="high",
            escalation=[{"after_minutes": 10, "approvers": [CAROL]}],
            callback_url=PUBLIC_CALLBACK,
            metadata={"thread_id": "t-1", "interrupt": {"id": 7}},
        ),
        "two_stages": DecisionFactory(
            api_key=key,
            action="Wire $9,000 to a new supplier",
            stages=[{"approvers": [ALICE], "quorum": "any"}, {"approvers": [BOB, CAROL], "quorum": "all"}],
        ),
        "by_policy": DecisionFactory(api_key=key, action="Refund $20", details={"amount": 20}),
    }
    approved = DecisionFactory(api_key=key, action="Refund $80", details={"amount": 80}, allow_edit=True)
    made["approved"] = _answer(approved, ALICE, choice="approve", note="ok, but less", details={"amount": 60})
    made["denied"] = _answer(
        DecisionFactory(api_key=key, action="Delete the staging DB"), ALICE, choice="deny"
    )
    made["responded"] = _answer(
        DecisionFactory(api_key=key, action="Which warehouse ships order #7?", response_type="text"),
        ALICE,
        text="Rotterdam, on Monday.",
    )
    made["other_option"] = _answer(
        DecisionFactory(api_key=key, action="Pick a carrier", options=["dhl", "ups"]), ALICE, choice="ups"
    )
    made["cancelled"] = decision_cancel(
        decision=DecisionFactory(api_key=key, action="Send the newsletter"), actor="acme agent"
    )
    overdue = DecisionFactory(api_key=key, action="Restart prod", timeout_minutes=5, on_timeout="deny")
    Decision.objects.filter(pk=overdue.pk).update(expires_at=F("expires_at") - timedelta(minutes=10))
    made["expired"] = decision_expire(decision_id=overdue.pk)
    seal()  # the audit pages and export show the sealed trail
    return {name: decision.pk for name, decision in made.items()}


# --- generated requests ---------------------------------------------------------------------


@schema.parametrize()
# schemathesis draws from the `random` module inside its strategies; Hypothesis seeds that module
# for every example, so a derandomized run still generates the same requests every time.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"
)
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_no_generated_request_gets_a_5xx_or_an_answer_the_schema_does_not_describe(
    case, live_api, acme_agent, acme_decisions
):
    # Every check schemathesis has, but one: positive_data_acceptance, which the test below
    # runs on the decision endpoints with the rules a schema cannot state taken care of.
    case.call_and_validate(
        base_url=live_api,
        headers=auth(acme_agent[1]),
        excluded_checks=[positive_data_acceptance],
        timeout=REQUEST_TIMEOUT,
    )


# --- every real object, every status --------------------------------------------------------


@pytest.fixture
def call(live_api):
    def call(method: str, path: str, raw_key: str | None, **case_fields):
        """One request by hand, its answer validated like the generated ones."""
        case = schema[path][method].Case(**case_fields)
        headers = auth(raw_key) if raw_key else {}
        return case.call_and_validate(
            base_url=live_api, headers=headers, checks=RESPONSE_CHECKS, timeout=REQUEST_TIMEOUT
        )

    return call


def test_every_kind_of_decision_object_matches_the_schema(call, acme_agent, acme_decisions):
    raw_key = acme_agent[1]
    for name, decision_id in acme_decisions.items():
        response = call(
            "GET", "/decisions/{decision_id}", raw_key, path_parameters={"decision_id": decision_id}
        )
        assert response.status_code == 200, name
        assert response.json()["id"] == decision_id

    # The long-poll answers with the same object, at once for a settled one.
    response = call(
        "GET",
        "/decisions/{decision_id}",
        raw_key,
        path_parameters={"decision_id": acme_decisions["approved"]},
        query={"wait": 5},
    )
    assert response.json()["status"] == "approved"

    page = call("GET", "/decisions", raw_key, query={"limit": 4})
    assert len(page.json()["results"]) == 4
    assert page.json()["next"]
    rest = call("GET", "/decisions", raw_key, query={"limit": 200}).json()["results"]
    assert {d["id"] for d in rest} == set(acme_decisions.values())


def test_every_status_the_decision_endpoints_answer_matches_the_schema(call, acme_agent, acme_decisions):
    raw_key = acme_agent[1]
    body = {
        "action": "Refund order #2001",
        "details": {"amount": 300},
        "approvers": [ALICE, BOB],
        "quorum": "all",
        "timeout_minutes": 30,
        "callback_url": PUBLIC_CALLBACK,
    }
    idempotent = {"Idempotency-Key": "refund-2001"}

    created = call("POST", "/decisions", raw_key, body=body, headers=idempotent)
    assert created.status_code == 201
    again = call("POST", "/decisions", raw_key, body=body, headers=idempotent)
    assert (again.status_code, again.json()["id"]) == (200, created.json()["id"])
    other_body = call("POST", "/decisions", raw_key, body={**body, "quorum": "any"}, headers=idempotent)
    assert other_body.status_code == 409
    invalid = call("POST", "/decisions", raw_key, body={"action": ""})
    assert invalid.status_code == 400

    cancel = "/decisions/{decision_id}/cancel"
    assert (
        call("POST", cancel, raw_key, path_parameters={"decision_id": acme_decisions["pending"]}).status_code
        == 200
    )
    assert (
        call("POST", cancel, raw_key, path_parameters={"decision_id": acme_decisions["denied"]}).status_code
        == 409
    )
    unknown = {"decision_id": "dec_00000000000000000000000000"}
    assert call("POST", cancel, raw_key, path_parameters=unknown).status_code == 404
    assert call("GET", "/decisions/{decision_id}", raw_key, path_parameters=unknown).status_code == 404
    assert call("GET", "/decisions", None).status_code == 401
    assert call("GET", "/decisions", "cs_not-a-key").status_code == 401


def test_the_audit_trail_of_every_kind_of_decision_matches_the_schema(call, acme_agent, acme_decisions):
    raw_key = acme_agent[1]

    events = call("GET", "/audit/events", raw_key, query={"limit": 200}).json()
    assert {"decision.created", "decision.resolved", "policy.matched"} <= {
        e["event"] for e in events["results"]
    }
    one = call("GET", "/audit/events", raw_key, query={"decision": acme_decisions["approved"]})
    assert one.status_code == 200

    export = call("GET", "/audit/export.csv", raw_key)
    assert export.status_code == 200
    assert acme_decisions["expired"] in export.text


# --- found by fuzzing ---------------------------------------------------------------------------


@pytest.fixture
def redis_listener_swallowing_its_cancel(monkeypatch, settings):
    """The long-poll hub's Redis subscription as Python 3.11 and redis-py make it now and
    then: a cancel that lands just as SUBSCRIBE's write completes is swallowed (3.11's
    asyncio.wait_for then returns the write's result instead of raising CancelledError,
    CPython gh-86296) and the listener carries on. Reproduced here on purpose, every time."""
    settings.LONGPOLL_REDIS_URL = "redis://127.0.0.1:1/0"  # never connected to: SUBSCRIBE is replaced

    async def subscribe(self, *args, **kwargs):
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    monkeypatch.setattr(redis.asyncio.client.PubSub, "subscribe", subscribe)


def test_a_long_poll_on_a_settled_decision_answers_even_if_the_redis_listener_ignores_its_cancel(
    live_api, acme_agent, acme_decisions, redis_listener_swallowing_its_cancel
):
    # Found by the fuzzer: GET /decisions/{id}?wait=N on a decision that is not pending (or
    # not found) answers at once, then stops the hub's Redis listener and waited for it to
    # finish; one that swallowed the cancel held the request forever.
    url = f"{live_api}/decisions/{acme_decisions['approved']}"

    try:
        response = requests.get(url, params={"wait": 30}, headers=auth(acme_agent[1]), timeout=20)
    except requests.Timeout:
        pytest.fail("the long-poll of a settled decision never answered: held by the Redis listener")

    assert response.status_code == 200
    assert response.json()["status"] == "approved"


# --- a request the schema allows is one the server takes ----------------------------------------

# Positive data only: every request is one the schema allows, to the decision and audit
# endpoints (the audit key's scope is on the agent's key here).
allowed_requests = schemathesis.openapi.from_dict(RAW_SCHEMA).include(path_regex="^/(decisions|audit/)")
# NUL is refused in every JSON string, which the schema says with a pattern on each string
# field, but OpenAPI 3.0 cannot put a pattern on the keys of details and metadata.
allowed_requests.config.generation.update(modes=["positive"], allow_x00=False)
ALLOWED_EXAMPLES = 100  # per operation: about 30 s in all


@pytest.fixture
def routed_org(acme_agent):
    """Acme routes a decision that names no approvers to alice, as the schema's description
    says a policy may: the schema lets a request name none."""
    organization = acme_agent[0].organization
    Policy.objects.create(
        organization=organization,
        name="catch-all",
        conditions=[],
        action=Policy.Action.ROUTE,
        approvers=[ALICE],
    )
    return organization


def meet_the_rules_stated_in_words(case, organization, *, serial: int) -> None:
    """What the schema says in descriptions because JSON Schema cannot: rules that compare one
    field with another, and what must exist. The generated request is brought to meet them and
    stays one the schema allows; nothing else about it changes."""
    if case.method == "GET" and case.query:
        # A cursor is only ever one the server gave, in a page's next or previous link.
        case.query.pop("cursor", None)
        # An audit period's `from` is not after its `to` (the parameters' descriptions say so).
        start, end = case.query.get("from"), case.query.get("to")
        if start and end and _moment(start) > _moment(end):
            case.query["from"], case.query["to"] = end, start
    if case.method != "POST" or case.path != "/decisions" or not isinstance(case.body, dict):
        return
    if key := (case.headers or {}).get("Idempotency-Key"):
        # Each request its own key: a key sent again with another body is a 409 before the body
        # is checked (the replay has tests of its own).
        case.headers["Idempotency-Key"] = f"{key[:240]}-{serial}"
    body = case.body
    if "stages" in body:
        stages = body["stages"]
    else:
        named = [body["approver"]] if "approver" in body else body.get("approvers", [ALICE])
        stages = [{"approvers": named, "quorum": body.get("quorum")}]
    levels = body.get("escalation", [])
    # The groups named are groups the organization has (of one member each).
    for address in [a for stage in stages for a in stage["approvers"]] + [
        a for level in levels for a in level["approvers"]
    ]:
        if address.startswith("group:"):
            name = address.removeprefix("group:")
            ApproverGroup.objects.get_or_create(
                organization=organization, name=name, defaults={"members": [f"{name}@groups.example.com"]}
            )
    # Escalation levels in order of after_minutes, each later than the last...
    levels = sorted(
        {level["after_minutes"]: level for level in levels}.values(), key=lambda level: level["after_minutes"]
    )
    body["escalation"] = levels
    # ...and they and the reminders before the timeout (the schema keeps them under the longest).
    latest = max([level["after_minutes"] for level in levels] + body.get("reminders", []), default=0)
    if latest >= body.get("timeout_minutes", organization.default_timeout_minutes):
        body["timeout_minutes"] = min(MAX_TIMEOUT_MINUTES, latest + 1)
    # A number for quorum is at most the people who could approve, escalation included.
    backups = [a for level in levels for a in level["approvers"]]
    for stage in stages:
        if isinstance(stage.get("quorum"), int) and not isinstance(stage["quorum"], bool):
            people = expand_addresses(organization_id=organization.pk, addresses=stage["approvers"] + backups)
            stage["quorum"] = min(stage["quorum"], len({person.address for person in people}))
    if "stages" not in body and "quorum" in body:
        body["quorum"] = stages[0]["quorum"]
    _meet_separation_of_duties(body, stages)


def _meet_separation_of_duties(body: dict, stages: list[dict]) -> None:
    """The requester is not the only approver of a stage, and (unless allowed) no two stages
    have the same only approver."""
    people = [{a.lower() for a in stage["approvers"]} for stage in stages]
    if body.get("requested_by", "").lower() in {a for group in people if len(group) == 1 for a in group}:
        body.pop("requested_by")
    sole = [next(iter(group)) for group in people if len(group) == 1]
    if len(sole) != len(set(sole)):
        body["distinct_stage_approvers"] = False


@allowed_requests.parametrize()
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"
)
@hypothesis.settings(
    max_examples=ALLOWED_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_a_request_the_schema_allows_is_not_refused_as_invalid(
    case, live_api, acme_agent, routed_org, settings
):
    # Whether a callback's host resolves to public addresses is the network's to say, not the
    # schema's (and this machine resolves no name): that check is lifted here.
    settings.CALLBACK_ALLOW_PRIVATE = True
    meet_the_rules_stated_in_words(case, routed_org, serial=next(SERIALS))

    case.call_and_validate(
        base_url=live_api,
        headers=auth(acme_agent[1]),
        checks=[positive_data_acceptance],
        timeout=REQUEST_TIMEOUT,
    )


SERIALS = itertools.count()


def _moment(text: str):
    from django.utils.dateparse import parse_datetime

    moment = parse_datetime(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
