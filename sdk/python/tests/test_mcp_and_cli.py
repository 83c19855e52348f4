"""countersign-mcp's tools and the CLI's parsing, against the fake service, with the MCP SDK's
in-memory client (the same tools over stdio and against the real service: tests/test_mcp.py
and tests/test_cli.py in the repository)."""

import argparse
import json

import anyio
import httpx
import pytest
from fake_service import ALICE, BOB, error

pytest.importorskip("mcp", reason='needs the "mcp" extra')

from countersign import cli
from countersign.mcp import build_server
from mcp import Client


def call(async_client, tool: str, arguments: dict, **server_options):
    async def scenario():
        async with Client(build_server(async_client, **server_options)) as client:
            return await client.call_tool(tool, arguments)

    return anyio.run(scenario)


def test_request_approval_sends_what_was_given_and_the_default_approvers(service, async_client):
    service.while_waiting = lambda decision_id: service.answer(decision_id, "approved", note="fine")

    result = call(
        async_client, "request_approval", {"action": "Deploy v1.2", "details": {"v": 1}}, approvers=[BOB]
    )

    assert service.bodies == [{"action": "Deploy v1.2", "details": {"v": 1}, "approvers": [BOB]}]
    assert result.structured_content["approved"] is True
    assert result.structured_content["message"] == f"Approved by {ALICE} via email. Note: fine"


def test_an_api_error_is_a_tool_error_with_its_code_and_fields(service, async_client):
    service.trouble.append(error(400, "invalid", "Bad approver.", {"approvers": ["not an address"]}))

    result = call(async_client, "request_approval", {"action": "Pay", "approvers": ["x"]})

    assert result.is_error
    assert 'invalid: Bad approver. Fields: {"approvers":["not an address"]}' in result.content[0].text


def test_an_unreachable_service_is_a_tool_error_after_the_retries(service, async_client):
    service.trouble.extend([httpx.ConnectError("refused")] * 4)

    result = call(async_client, "get_decision", {"decision_id": "dec_0001"})

    assert result.is_error
    assert "unavailable" in result.content[0].text
    assert len(async_client.slept) == 3  # the client's own retries came first


def test_a_permission_prompt_keys_its_decision_to_the_tool_use(service, async_client):
    prompt = {"tool_name": "Bash", "input": {"command": "ls"}, "tool_use_id": "toolu_1"}

    first = call(async_client, "permission_prompt", prompt, approvers=[ALICE], wait=0)
    again = call(async_client, "permission_prompt", prompt, approvers=[ALICE], wait=0)
    other = call(
        async_client, "permission_prompt", {**prompt, "tool_use_id": "toolu_2"}, approvers=[ALICE], wait=0
    )

    keys = [r.headers["idempotency-key"] for r in service.seen if r.method == "POST"]
    assert keys[0] == keys[1] != keys[2]
    assert len(service.decisions) == 2
    assert json.loads(first.content[0].text)["behavior"] == "deny"  # pending
    assert json.loads(again.content[0].text)["behavior"] == "deny"
    assert json.loads(other.content[0].text)["behavior"] == "deny"


@pytest.mark.parametrize(
    ("text", "minutes"), [("30m", 30), ("2h", 120), ("1h30m", 90), ("90s", 1.5), ("45", 45)]
)
def test_durations(text, minutes):
    assert cli.minutes(text) == minutes


@pytest.mark.parametrize("text", ["soon", "30x", "0", "-5", "1h 30m", "m"])
def test_durations_that_are_not(text):
    with pytest.raises(argparse.ArgumentTypeError):
        cli.minutes(text)


def test_details_are_strings_unless_given_as_json():
    assert cli.detail("version=1.10") == ("version", "1.10")
    assert cli.detail("replicas:=3") == ("replicas", 3)
    assert cli.detail("url=https://x.test/?a=b") == ("url", "https://x.test/?a=b")
    with pytest.raises(argparse.ArgumentTypeError):
        cli.detail("version")
    with pytest.raises(argparse.ArgumentTypeError):
        cli.detail("n:=not json")
