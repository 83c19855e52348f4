"""Raw HTTP against the app as production runs it: the ASGI application under uvicorn. Bodies
sent chunked (Transfer-Encoding: chunked, no Content-Length), bodies over the 1 MiB limit, and
header bytes that HTTP does not allow.

Requests are written with http.client, chunked where it says so, or byte by byte on a socket
where http.client itself refuses what the test sends (a control character in a header).

What the app does not see: uvicorn's HTTP parser (httptools; h11 likewise for some bytes)
refuses a request whose header holds a control character such as \\x01 with its own plain-text
400 before the application is called, as a reverse proxy in front would. The contract's JSON
error shape covers every request the app receives; the last test holds the app to it for every
control character that gets through, and checks that none becomes an Idempotency-Key.
"""

import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest

from broker.asgi import application
from decisions.links import link_token
from decisions.models import ApprovalRequest, Decision, Status
from decisions.services import DecisionSpec, decision_create
from tests.conftest import ALICE
from tests.helpers import keep_published_deliveries, serving

LIMIT = 1024 * 1024
REFUND = {
    "action": "Refund order #1042 for $120",
    "details": {"amount": 120, "customer": "Ada"},
    "approver": ALICE,
    "timeout_minutes": 30,
}


@pytest.fixture
def published(monkeypatch) -> list[int]:
    """Delivery tasks the server hands to the broker; kept here, not sent to a shared broker."""
    return keep_published_deliveries(monkeypatch)


@pytest.fixture
def server(transactional_db, published):
    """The ASGI app under uvicorn. transactional_db: the server's threads see what the test commits."""
    with serving(application) as url:
        yield urlsplit(url)


@pytest.fixture
def agent_headers(acme_key) -> dict[str, str]:
    return {"Authorization": f"Bearer {acme_key[1]}", "Content-Type": "application/json"}


def send_chunked(server, path: str, body: bytes, headers: dict[str, str], *, piece: int = 65536):
    """POST body in chunks of `piece` bytes, with Transfer-Encoding: chunked and no Content-Length.
    Returns (status, Content-Type, body)."""
    conn = http.client.HTTPConnection(server.hostname, server.port, timeout=30)
    try:
        pieces = (body[i : i + piece] for i in range(0, len(body), piece))
        conn.request("POST", path, body=pieces, headers=headers, encode_chunked=True)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def send_raw(server, head: bytes, body: bytes = b"", *, timeout: float = 30) -> tuple[int, dict, bytes]:
    """Send these bytes as they are (Connection: close); the response's status, headers and body."""
    with socket.create_connection((server.hostname, server.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    headers = dict(line.decode("latin-1").lower().split(": ", 1) for line in header_block.split(b"\r\n"))
    if headers.get("transfer-encoding") == "chunked":
        payload = _dechunk(payload)
    return int(status_line.split()[1]), headers, payload


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2 :]


def test_a_chunked_json_body_is_read(server, agent_headers, published):
    # Pieces of 7 bytes: chunk boundaries fall inside keys, strings and numbers.
    status, content_type, body = send_chunked(
        server, "/decisions", json.dumps(REFUND).encode(), agent_headers, piece=7
    )

    assert status == 201, body
    assert content_type == "application/json"
    created = json.loads(body)
    assert created["action"] == REFUND["action"]
    assert created["details"] == REFUND["details"]
    decision = Decision.objects.get(pk=created["id"])
    assert list(decision.requests.values_list("address", flat=True)) == [ALICE]
    assert len(published) == 1


def test_a_chunked_json_body_with_an_idempotency_key_is_the_same_decision_when_sent_again(
    server, agent_headers
):
    headers = {**agent_headers, "Idempotency-Key": "refund-1042"}
    first = send_chunked(server, "/decisions", json.dumps(REFUND).encode(), headers, piece=100)
    again = send_chunked(server, "/decisions", json.dumps(REFUND).encode(), headers, piece=9)

    assert (first[0], again[0]) == (201, 200)
    assert json.loads(first[2])["id"] == json.loads(again[2])["id"]


def oversized_refund() -> bytes:
    """Valid JSON of 2 MiB: only its size is wrong."""
    return json.dumps({**REFUND, "context": "x" * (2 * LIMIT)}).encode()


def test_a_chunked_body_over_1_mib_is_a_413_in_the_json_shape(server, agent_headers):
    status, content_type, body = send_chunked(server, "/decisions", oversized_refund(), agent_headers)

    assert status == 413, body[:500]
    assert content_type == "application/json"
    assert json.loads(body) == {
        "error": {"code": "payload_too_large", "message": "Request body is larger than 1 MiB.", "fields": {}}
    }
    assert not Decision.objects.exists()


def test_a_body_of_exactly_1_mib_sent_chunked_is_read_to_its_end(server, agent_headers):
    # The limit is on the body's size, not one byte less: 1 MiB of valid JSON is parsed (and
    # refused for its context being too long, which only a body read to its end can show).
    prefix = json.dumps({**REFUND, "context": ""}).encode()[:-2]  # up to the context's opening quote
    body = prefix + b"x" * (LIMIT - len(prefix) - 2) + b'"}'
    assert len(body) == LIMIT

    status, content_type, answer = send_chunked(server, "/decisions", body, agent_headers)

    assert status == 400, answer[:500]
    assert content_type == "application/json"
    assert "context" in json.loads(answer)["error"]["fields"]


def test_a_declared_content_length_over_1_mib_is_a_413_before_the_body_is_sent(server, agent_headers):
    # Only the head is sent: the answer must not wait for 2 MiB that never come.
    head = (
        "POST /decisions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in agent_headers.items())
        + f"Content-Length: {2 * LIMIT}\r\n\r\n"
    ).encode()
    try:
        status, headers, payload = send_raw(server, head, timeout=10)
    except TimeoutError:
        pytest.fail("no answer within 10 s: the server waited for the body")

    assert status == 413, payload[:300]
    assert headers["content-type"] == "application/json"
    assert json.loads(payload)["error"]["code"] == "payload_too_large"


@pytest.fixture
def alice_approve_path(acme_key, published) -> tuple[Decision, str]:
    decision, created = decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(
            action=REFUND["action"],
            details=REFUND["details"],
            stages=[{"approvers": [ALICE], "quorum": "any"}],
        ),
    )
    assert created
    request = ApprovalRequest.objects.get(decision=decision, address=ALICE)
    return decision, f"/a/{link_token(request, 'approve')}"


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_an_approver_confirming_with_a_chunked_form_is_answered(server, alice_approve_path):
    decision, path = alice_approve_path

    status, content_type, body = send_chunked(server, path, b"confirm=yes&note=Refund+it.", FORM, piece=5)

    assert status == 200, body[:500]
    assert content_type.startswith("text/html")
    decision.refresh_from_db()
    assert decision.status == Status.APPROVED
    assert decision.outcome["note"] == "Refund it."


def test_a_chunked_form_over_1_mib_on_an_approval_page_is_a_413_page(server, alice_approve_path):
    decision, path = alice_approve_path

    status, content_type, body = send_chunked(
        server, path, b"confirm=yes&note=" + b"x" * (2 * LIMIT), FORM, piece=65536
    )

    assert status == 413, body[:500]
    assert content_type.startswith("text/html")
    assert b"Too large" in body
    decision.refresh_from_db()
    assert decision.status == Status.PENDING


# Every control character a header value could carry as one byte: C0, DEL, and C1 (bytes
# 0x80-0x9F, which Django reads as Latin-1, as HTTP/1.1 header bytes are).
CONTROL_BYTES = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_a_control_character_in_the_idempotency_key_never_becomes_a_key(
    transactional_db, published, agent_headers, parser
):
    # httptools is what `uvicorn` runs with uvicorn[standard] installed; h11 is its pure-Python
    # parser, which lets more control characters through to the app.
    with serving(application, http=parser) as url:
        answered_by_the_app = _send_every_control_character(urlsplit(url), agent_headers)

    assert not Decision.objects.exists()
    # The tab and the C1 bytes pass both parsers: this test does test the app.
    assert {0x09, 0x85} <= set(answered_by_the_app)
    if parser == "h11":
        assert 0x01 in answered_by_the_app


def _send_every_control_character(server, agent_headers) -> list[int]:
    """POST /decisions once per control byte in the Idempotency-Key; the bytes the app answered."""
    body = json.dumps(REFUND).encode()
    answered_by_the_app = []
    for byte in CONTROL_BYTES:
        head = (
            b"POST /decisions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in agent_headers.items()).encode()
            + b"Idempotency-Key: refund-"
            + bytes([byte])
            + b"-1042\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )

        status, headers, payload = send_raw(server, head, body)

        assert status == 400, (hex(byte), status, payload[:300])
        if headers["content-type"].startswith("text/plain"):
            # uvicorn's parser refused the request: the application never saw it
            assert payload == b"Invalid HTTP request received.", hex(byte)
            continue
        # the app saw it: the contract's JSON error, naming the header
        assert headers["content-type"] == "application/json", hex(byte)
        error = json.loads(payload)["error"]
        assert error["code"] == "invalid"
        assert list(error["fields"]) == ["Idempotency-Key"], hex(byte)
        answered_by_the_app.append(byte)
    return answered_by_the_app
