"""POST /decisions with bad input: every field of the contract's table with the wrong type,
range or value, broken JSON and oversized bodies. Each answer is a 4xx in the contract's
error shape, and nothing at all is stored: no decision, no request, no outbox row, no audit."""

import json

import pytest

from audit.models import AuditEvent
from decisions.models import ApprovalRequest, ApproverGroup, Decision
from notifications.models import Delivery
from tests.conftest import ALICE, BOB, CAROL

VALID = {"action": "Refund order #1042", "approver": ALICE}
MIB = 1024 * 1024
YEAR_MINUTES = 365 * 24 * 60


class Raw(bytes):
    """A body sent as these exact bytes, for what the JSON encoder cannot or will not produce."""


def body(**changes) -> dict:
    return {**VALID, **changes}


def without(*names: str, **changes) -> dict:
    return {k: v for k, v in {**VALID, **changes}.items() if k not in names}


def nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels - 1):
        value = {"x": value}
    return value


def padded_json(size: int) -> Raw:
    """A well-formed request of exactly `size` bytes."""
    head = json.dumps(body(details={"pad": ""}))[:-3]  # up to the opening quote of the pad
    return Raw((head + "a" * (size - len(head) - 3) + '"}}').encode())


@pytest.fixture(autouse=True)
def _finance_group(acme):
    """Acme has a finance group of two, so group quorum can be checked; 'nobody' does not exist."""
    ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB])


def assert_nothing_stored():
    assert Decision.objects.count() == 0
    assert ApprovalRequest.objects.count() == 0
    assert Delivery.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def assert_error_shape(response, *, status: int, code: str, field: str | None):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["fields"], dict)
    if field is not None:
        assert field in error["fields"], error


def invalid(payload, field, *, id):
    return pytest.param(payload, 400, "invalid", field, id=id)


def unparsable(payload, *, id):
    return pytest.param(payload, 400, "parse_error", None, id=id)


CASES = [
    # action: string, 1..500, required
    invalid(without("action"), "action", id="action-missing"),
    invalid(body(action=""), "action", id="action-empty"),
    invalid(body(action="   \t "), "action", id="action-whitespace"),
    invalid(body(action="x" * 501), "action", id="action-501-chars"),
    invalid(body(action=42), "action", id="action-number"),
    invalid(body(action=None), "action", id="action-null"),
    invalid(body(action=["Refund"]), "action", id="action-list"),
    # context: string, <= 20 000
    invalid(body(context=7), "context", id="context-number"),
    invalid(body(context={"why": "because"}), "context", id="context-object"),
    invalid(body(context="x" * 20_001), "context", id="context-20001-chars"),
    # details: object
    invalid(body(details="amount=5"), "details", id="details-string"),
    invalid(body(details=[1, 2]), "details", id="details-list"),
    invalid(body(details=5), "details", id="details-number"),
    # approver / approvers / stages
    invalid(body(approver="not an address"), "approver", id="approver-not-an-address"),
    invalid(body(approver="slack:bad"), "approver", id="approver-slack-bad"),
    invalid(body(approver="group:no spaces"), "approver", id="approver-group-bad-name"),
    invalid(body(approver=42), "approver", id="approver-number"),
    invalid(body(approver=""), "approver", id="approver-empty"),
    invalid(without("approver", approvers=[]), "approvers", id="approvers-empty-list"),
    invalid(without("approver", approvers=ALICE), "approvers", id="approvers-not-list"),
    invalid(without("approver", approvers={"a": ALICE}), "approvers", id="approvers-object"),
    invalid(without("approver", approvers=[ALICE, 7]), "approvers", id="approvers-non-string"),
    invalid(
        without("approver", approvers=[f"user{i}@example.com" for i in range(51)]),
        "approvers",
        id="approvers-51",
    ),
    invalid(body(approvers=[BOB]), "approvers", id="approver-and-approvers"),
    invalid(body(stages=[{"approvers": [BOB]}]), "stages", id="approver-and-stages"),
    invalid(without("approver"), "approvers", id="no-approvers-at-all"),
    invalid(without("approver", approvers=["group:nobody"]), "approvers", id="unknown-group"),
    invalid(body(approver="group:nobody"), "approvers", id="unknown-group-single"),
    invalid(
        without("approver", stages=[{"approvers": [ALICE]}, {"approvers": ["group:nobody"]}]),
        "stages[1]",
        id="unknown-group-in-later-stage",
    ),
    # quorum: "any" | "all" | n >= 1
    invalid(without("approver", approvers=[ALICE, BOB], quorum=0), "quorum", id="quorum-0"),
    invalid(without("approver", approvers=[ALICE, BOB], quorum=-1), "quorum", id="quorum-negative"),
    invalid(without("approver", approvers=[ALICE, BOB], quorum=True), "quorum", id="quorum-true"),
    invalid(without("approver", approvers=[ALICE, BOB], quorum="most"), "quorum", id="quorum-most"),
    invalid(without("approver", approvers=[ALICE, BOB], quorum=1.5), "quorum", id="quorum-fraction"),
    invalid(without("approver", approvers=[ALICE, BOB], quorum=3), "quorum", id="quorum-3-of-2"),
    invalid(
        without("approver", approvers=["group:finance"], quorum=3), "quorum", id="quorum-3-of-group-of-2"
    ),
    invalid(
        without("approver", stages=[{"approvers": [ALICE]}], quorum="all"), "quorum", id="quorum-with-stages"
    ),
    # stages: list of {approvers, quorum}, 1..10
    invalid(without("approver", stages=[]), "stages", id="stages-empty"),
    invalid(without("approver", stages={"approvers": [ALICE]}), "stages", id="stages-not-list"),
    invalid(without("approver", stages=[{"approvers": []}]), "stages", id="stage-zero-approvers"),
    invalid(without("approver", stages=[{"quorum": "any"}]), "stages", id="stage-without-approvers"),
    invalid(
        without("approver", stages=[{"approvers": [ALICE], "quorum": 2}]),
        "stages[0].quorum",
        id="stage-quorum-2-of-1",
    ),
    invalid(without("approver", stages=[{"approvers": [ALICE]}] * 11), "stages", id="stages-11"),
    # options: 1..10 different strings of 1..64
    invalid(body(options=[]), "options", id="options-empty"),
    invalid(body(options=["approve", "approve"]), "options", id="options-duplicates"),
    invalid(body(options=["approve", 2]), "options", id="options-non-string"),
    invalid(body(options=["approve", "x" * 65]), "options", id="options-65-chars"),
    invalid(body(options=["approve", ""]), "options", id="options-empty-string"),
    invalid(body(options=[f"option {i}" for i in range(11)]), "options", id="options-11"),
    invalid(body(options="approve"), "options", id="options-not-list"),
    # response, allow_edit
    invalid(body(response="voice"), "response", id="response-voice"),
    invalid(body(response="text", options=["yes", "no"]), "options", id="options-with-text-response"),
    invalid(body(allow_edit="yes"), "allow_edit", id="allow_edit-yes"),
    invalid(body(allow_edit=1), "allow_edit", id="allow_edit-1"),
    invalid(body(allow_edit=True, response="text"), "allow_edit", id="allow_edit-with-text-response"),
    invalid(body(allow_edit=True, options=["ship", "hold"]), "allow_edit", id="allow_edit-without-approve"),
    # urgency
    invalid(body(urgency="urgent"), "urgency", id="urgency-urgent"),
    invalid(body(urgency="HIGH"), "urgency", id="urgency-uppercase"),
    # timeout_minutes: number > 0, at most a year
    invalid(body(timeout_minutes=0), "timeout_minutes", id="timeout-0"),
    invalid(body(timeout_minutes=-5), "timeout_minutes", id="timeout-negative"),
    invalid(body(timeout_minutes="30"), "timeout_minutes", id="timeout-string"),
    invalid(body(timeout_minutes=True), "timeout_minutes", id="timeout-true"),
    invalid(body(timeout_minutes=None), "timeout_minutes", id="timeout-null"),
    invalid(body(timeout_minutes=YEAR_MINUTES + 1), "timeout_minutes", id="timeout-over-a-year"),
    unparsable(
        Raw(b'{"action": "Refund", "approver": "alice@example.com", "timeout_minutes": 1e400}'),
        id="timeout-1e400",
    ),
    invalid(
        Raw(
            b'{"action": "Refund", "approver": "alice@example.com", "timeout_minutes": 1' + b"0" * 400 + b"}"
        ),
        "timeout_minutes",
        id="timeout-huge-integer",
    ),
    # on_timeout
    invalid(body(on_timeout="explode"), "on_timeout", id="on_timeout-explode"),
    # escalation: list of {after_minutes, approvers}, in order, before the timeout
    invalid(
        body(escalation={"after_minutes": 5, "approvers": [BOB]}), "escalation", id="escalation-not-list"
    ),
    invalid(
        body(escalation=[{"after_minutes": 0, "approvers": [BOB]}]), "escalation", id="escalation-after-0"
    ),
    invalid(
        body(escalation=[{"after_minutes": -1, "approvers": [BOB]}]),
        "escalation",
        id="escalation-after-negative",
    ),
    invalid(
        body(escalation=[{"after_minutes": "5", "approvers": [BOB]}]),
        "escalation",
        id="escalation-after-string",
    ),
    invalid(
        body(escalation=[{"after_minutes": 5, "approvers": []}]), "escalation", id="escalation-no-approvers"
    ),
    invalid(
        Raw(
            b'{"action": "Refund", "approver": "alice@example.com", '
            b'"escalation": [{"after_minutes": 1' + b"0" * 400 + b', "approvers": ["bob@example.com"]}]}'
        ),
        "escalation",
        id="escalation-after-huge-integer",
    ),
    invalid(
        body(
            escalation=[
                {"after_minutes": 20, "approvers": [BOB]},
                {"after_minutes": 10, "approvers": [CAROL]},
            ]
        ),
        "escalation",
        id="escalation-out-of-order",
    ),
    invalid(
        body(
            escalation=[
                {"after_minutes": 10, "approvers": [BOB]},
                {"after_minutes": 10, "approvers": [CAROL]},
            ]
        ),
        "escalation",
        id="escalation-same-time-twice",
    ),
    invalid(
        body(timeout_minutes=30, escalation=[{"after_minutes": 30, "approvers": [BOB]}]),
        "escalation[0].after_minutes",
        id="escalation-at-timeout",
    ),
    invalid(
        body(timeout_minutes=30, escalation=[{"after_minutes": 45, "approvers": [BOB]}]),
        "escalation[0].after_minutes",
        id="escalation-after-timeout",
    ),
    invalid(
        body(escalation=[{"after_minutes": 90, "approvers": [BOB]}]),
        "escalation[0].after_minutes",
        id="escalation-after-default-timeout",
    ),
    invalid(
        body(escalation=[{"after_minutes": 10, "approvers": ["group:nobody"]}]),
        "escalation[0].approvers",
        id="escalation-unknown-group",
    ),
    # callback_url (CALLBACK_ALLOW_PRIVATE is off in this module)
    invalid(body(callback_url="ftp://hooks.example.com/x"), "callback_url", id="callback-ftp"),
    invalid(body(callback_url="https:///hook"), "callback_url", id="callback-no-host"),
    invalid(body(callback_url="hooks.example.com/x"), "callback_url", id="callback-no-scheme"),
    invalid(
        body(callback_url="https://user:pass@hooks.example.com/x"), "callback_url", id="callback-credentials"
    ),
    invalid(body(callback_url="https://hooks.example.com/my hook"), "callback_url", id="callback-spaces"),
    invalid(
        body(callback_url="https://hooks.example.com/" + "a" * 1975), "callback_url", id="callback-2001-chars"
    ),
    invalid(body(callback_url=123), "callback_url", id="callback-number"),
    invalid(body(callback_url="https://127.0.0.1/hook"), "callback_url", id="callback-loopback"),
    invalid(body(callback_url="https://[::1]/hook"), "callback_url", id="callback-loopback-v6"),
    invalid(body(callback_url="https://10.1.2.3/hook"), "callback_url", id="callback-private"),
    invalid(
        body(callback_url="http://169.254.169.254/latest/meta-data/"), "callback_url", id="callback-metadata"
    ),
    # metadata: object
    invalid(body(metadata="thread-7"), "metadata", id="metadata-string"),
    invalid(body(metadata=["thread-7"]), "metadata", id="metadata-list"),
    # unknown top-level field: a typo must not be silently ignored
    invalid(body(timeout_minute=30), "timeout_minute", id="unknown-field"),
    # bodies that are JSON but not an object
    invalid(Raw(b"[]"), None, id="body-list"),
    invalid(Raw(b'[{"action": "Refund", "approver": "alice@example.com"}]'), None, id="body-list-of-object"),
    invalid(Raw(b'"Refund order #1042"'), None, id="body-string"),
    invalid(Raw(b"42"), None, id="body-number"),
    invalid(Raw(b"null"), None, id="body-null"),
    invalid(Raw(b""), "action", id="body-empty"),
    # bodies that are not JSON, or not storable
    unparsable(Raw(b'{"action": "Refund", "appro'), id="truncated-json"),
    unparsable(Raw(b"{'action': 'Refund'}"), id="single-quoted-json"),
    unparsable(Raw(b'{"action": NaN, "approver": "alice@example.com"}'), id="nan"),
    unparsable(Raw(b'{"action": "Refund \xff\xfe", "approver": "alice@example.com"}'), id="invalid-utf8"),
    unparsable(body(action="Refund\u0000order"), id="nul-in-action"),
    unparsable(body(details={"customer": "Acme\u0000"}), id="nul-in-details-value"),
    unparsable(body(details={"cust\u0000omer": "Acme"}), id="nul-in-details-key"),
    unparsable(body(metadata={"thread_id": "\u0000"}), id="nul-in-metadata"),
    unparsable(Raw(b'{"action": "Refund \\ud800", "approver": "alice@example.com"}'), id="lone-surrogate"),
    unparsable(
        Raw(b'{"action": "Refund", "approver": "alice@example.com", "details": {"k": "\\udfff"}}'),
        id="lone-surrogate-in-details",
    ),
    unparsable(body(details=nested(100)), id="details-nested-100-deep"),
    unparsable(
        Raw(
            b'{"action": "Refund", "approver": "alice@example.com", "details": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}"
        ),
        id="nested-100000-deep",
    ),
    # too large: refused before the body is read
    pytest.param(padded_json(MIB + 1), 413, "payload_too_large", None, id="body-just-over-1MiB"),
    pytest.param(padded_json(5 * MIB), 413, "payload_too_large", None, id="body-5MB"),
]


@pytest.mark.parametrize(("payload", "status", "code", "field"), CASES)
def test_bad_input_is_refused_and_nothing_is_stored(api, settings, payload, status, code, field):
    settings.CALLBACK_ALLOW_PRIVATE = False

    if isinstance(payload, Raw):
        response = api.generic("POST", "/decisions", bytes(payload), content_type="application/json")
    else:
        response = api.post("/decisions", payload, format="json")

    assert_error_shape(response, status=status, code=code, field=field)
    assert_nothing_stored()


def test_padded_body_helper_builds_valid_json_of_the_asked_size():
    """The oversized cases above must be refused for their size, not for broken JSON."""
    payload = padded_json(MIB + 1)

    assert len(payload) == MIB + 1
    assert json.loads(payload)["details"]["pad"].startswith("a")


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b"action=Refund&approver=alice%40example.com", "application/x-www-form-urlencoded"),
        (b'{"action": "Refund", "approver": "alice@example.com"}', "text/plain"),
        (b'{"action": "Refund", "approver": "alice@example.com"}', "application/xml"),
    ],
    ids=["form-encoded", "json-as-text-plain", "xml"],
)
def test_other_media_types_are_unsupported(api, payload, content_type):
    response = api.generic("POST", "/decisions", payload, content_type=content_type)

    assert_error_shape(response, status=415, code="unsupported_media_type", field=None)
    assert_nothing_stored()


def test_multipart_form_is_unsupported(api):
    response = api.post("/decisions", {"action": "Refund", "approver": ALICE}, format="multipart")

    assert_error_shape(response, status=415, code="unsupported_media_type", field=None)
    assert_nothing_stored()


@pytest.mark.parametrize("key", ["k" * 256, ""], ids=["256-chars", "empty"])
def test_bad_idempotency_key_is_refused(api, key):
    response = api.post("/decisions", VALID, format="json", headers={"Idempotency-Key": key})

    assert_error_shape(response, status=400, code="invalid", field="Idempotency-Key")
    assert_nothing_stored()


def test_idempotency_key_of_255_chars_is_accepted(api):
    """The boundary next to the refused 256: the contract allows any string up to 255."""
    response = api.post("/decisions", VALID, format="json", headers={"Idempotency-Key": "k" * 255})

    assert response.status_code == 201


def test_bad_input_with_an_idempotency_key_does_not_reserve_the_key(api):
    """A refused request must not burn the key: the corrected retry with it succeeds."""
    headers = {"Idempotency-Key": "refund-1042"}
    refused = api.post("/decisions", body(urgency="urgent"), format="json", headers=headers)
    retried = api.post("/decisions", VALID, format="json", headers=headers)

    assert refused.status_code == 400
    assert retried.status_code == 201
    assert Decision.objects.count() == 1


def test_error_lists_every_bad_field(api):
    """The agent fixes everything in one go, not one field per round trip."""
    response = api.post("/decisions", body(urgency="urgent", on_timeout="explode", context=5), format="json")

    assert response.status_code == 400
    assert {"urgency", "on_timeout", "context"} <= set(response.json()["error"]["fields"])
    assert_nothing_stored()
