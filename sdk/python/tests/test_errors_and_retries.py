"""Errors carry the contract's error body; connection trouble is retried with the same
Idempotency-Key, so a retry never asks alice twice."""

import httpx
import pytest
from countersign import (
    APIError,
    AuthenticationError,
    Conflict,
    ConnectionFailed,
    Countersign,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
)
from fake_service import ALICE, API_KEY, BASE_URL, error


def agent_behind(handler) -> Countersign:
    """Acme's agent behind a network that `handler` may break; retries do not sleep."""
    agent = Countersign(BASE_URL, API_KEY, transport=httpx.MockTransport(handler))
    agent._sleep = lambda seconds: None
    return agent


def test_a_400_raises_invalid_request_with_the_fields_to_fix(client, service):
    service.trouble.append(
        error(400, "invalid", "Invalid input.", {"timeout_minutes": ["Must be more than 0."]})
    )

    with pytest.raises(InvalidRequest) as raised:
        client.create("Deploy 4.2", approver=ALICE, timeout_minutes=-1)

    assert raised.value.status_code == 400
    assert raised.value.code == "invalid"
    assert raised.value.fields == {"timeout_minutes": ["Must be more than 0."]}
    assert raised.value.body["error"]["message"] == "Invalid input."


def test_a_wrong_key_is_an_authentication_error(client, service):
    service.trouble.append(error(401, "unauthenticated", "Missing or invalid API key."))

    with pytest.raises(AuthenticationError) as raised:
        client.get("dec_0001")

    assert raised.value.code == "unauthenticated"


def test_another_organizations_decision_is_not_found(client):
    with pytest.raises(NotFound) as raised:
        client.get("dec_9999")

    assert raised.value.status_code == 404


def test_cancelling_a_resolved_decision_is_a_conflict(client, service):
    decision = client.create("Deploy 4.2", approver=ALICE)
    service.answer(decision.id, "approved")

    with pytest.raises(Conflict) as raised:
        client.cancel(decision.id)

    assert raised.value.code == "already_resolved"


def test_an_idempotency_key_reused_for_another_body_is_a_conflict(client):
    client.create("Deploy 4.2", approver=ALICE, idempotency_key="release")

    with pytest.raises(Conflict) as raised:
        client.create("Deploy 4.3", approver=ALICE, idempotency_key="release")

    assert raised.value.code == "idempotency_conflict"


def test_a_dropped_connection_is_retried_with_the_same_idempotency_key(client, service):
    service.trouble += [httpx.ConnectError("refused"), httpx.ReadError("connection reset")]

    decision = client.create("Refund $80 to order #1234", approver=ALICE)

    posts = [request for request in service.seen if request.method == "POST"]
    assert len(posts) == 3
    assert len({request.headers["idempotency-key"] for request in posts}) == 1
    assert len(service.decisions) == 1  # asked once, whatever the network did
    assert decision.id == service.only()["id"]
    assert len(client.slept) == 2


def test_a_create_whose_answer_was_lost_finds_the_first_decision_on_retry(service):
    # The first attempt reached the service, but its answer never came back.
    original = service.handle
    calls = []

    def lose_the_first_answer(request):
        response = original(request)
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadError("connection reset after the request was sent")
        return response

    agent = agent_behind(lose_the_first_answer)

    decision = agent.create("Refund $80 to order #1234", approver=ALICE)

    assert len(calls) == 2
    assert len(service.decisions) == 1
    assert decision.id == "dec_0001"


def test_503_and_429_are_retried_and_retry_after_is_honoured(client, service):
    limited = error(429, "rate_limited", "Too many requests.")
    limited.headers["Retry-After"] = "7"
    service.trouble += [httpx.Response(503, text="<html>maintenance</html>"), limited]

    decision = client.create("Deploy 4.2", approver=ALICE)

    assert decision.status == "pending"
    assert client.slept[1] == 7.0


def test_when_retries_run_out_the_last_error_is_raised(client, service):
    limited = error(429, "rate_limited", "Too many requests.")
    limited.headers["Retry-After"] = "30"
    service.trouble += [limited] * 4

    with pytest.raises(RateLimited) as raised:
        client.get("dec_0001")

    assert raised.value.retry_after == 30.0
    assert len(service.seen) == 4  # the first try and three retries


def test_a_proxy_error_page_becomes_a_server_error_with_a_made_up_code(client, service):
    service.trouble += [httpx.Response(502, text="<html>Bad gateway</html>")] * 4

    with pytest.raises(ServerError) as raised:
        client.get("dec_0001")

    assert raised.value.code == "http_502"
    assert "Bad gateway" in raised.value.message
    assert isinstance(raised.value, APIError)


def test_an_unreachable_service_raises_connection_failed_after_the_retries(client, service):
    service.trouble += [httpx.ConnectError("refused")] * 4

    with pytest.raises(ConnectionFailed) as raised:
        client.get("dec_0001")

    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    assert len(client.slept) == 3


def test_a_cancel_retried_after_a_broken_connection_returns_the_cancelled_decision(client, service):
    decision = client.create("Deploy 4.2", approver=ALICE)
    original = service.handle
    cancels = []

    def cancel_then_lose_the_answer(request):
        response = original(request)
        if request.url.path.endswith("/cancel"):
            cancels.append(response.status_code)
            if len(cancels) == 1:
                raise httpx.ReadError("connection reset")
        return response

    agent = agent_behind(cancel_then_lose_the_answer)

    cancelled = agent.cancel(decision.id)

    assert cancels == [200, 409]  # the retry found it already cancelled, by our first attempt
    assert cancelled.status == "cancelled"
