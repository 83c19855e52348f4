"""The MCP server, both ways an agent reaches it, driven by the `mcp` SDK's own client:

- stdio: the SDK's `countersign-mcp` program, spawned as Claude Code would, talking to the
  live service over its REST API;
- streamable HTTP: the service's own /mcp, authenticated with the API key.

The service runs for real (broker/asgi.py under uvicorn, PostgreSQL, Redis for the long-poll's
wake-ups); alice answers by her email links while the agent's tool call waits.

Named actors: Acme's agent asks (by MCP); alice approves or denies; Globex is the other tenant.
"""

import asyncio
import json
import os
import re
import subprocess
import sys
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import anyio
import httpx
import httpx2
import pytest
from countersign import mcp as sdk_mcp
from django.db import connection
from django.utils import timezone
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from audit.models import AuditEvent
from broker.asgi import application
from decisions import mcp_tools
from decisions.models import Decision, Policy
from decisions.services import decision_expire
from organizations.auth import ApiKeyRateThrottle
from organizations.services import api_key_create
from tests.conftest import ALICE, BOB
from tests.live import clicks, newest_decision, serving

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

COUNTERSIGN_MCP = str(Path(sys.executable).with_name("countersign-mcp"))
TOOLS = {"request_approval", "wait_for_decision", "get_decision", "cancel_decision", "permission_prompt"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def service(settings, monkeypatch):
    """Countersign, live. Alice's links point at it; no worker sends her email (the test
    plays her clicks), so deliveries stay in the outbox."""
    monkeypatch.setattr("notifications.services._publish", lambda delivery_ids: None)
    with serving(application) as url:
        settings.PUBLIC_BASE_URL = url
        yield url


@pytest.fixture(params=["stdio", "http"])
def transport(request) -> str:
    return request.param


@asynccontextmanager
async def connect(
    transport: str, url: str, raw_key: str, *, approver: str | None = ALICE, wait=None, mode="auto"
):
    """An MCP client session with Countersign over `transport`, configured as its README says:
    `countersign-mcp --approver … --wait …` with the key in the environment, or
    `/mcp?approver=…&wait=…` with the key as a Bearer header."""
    if transport == "stdio":
        args = (["--approver", approver] if approver else []) + (
            ["--wait", str(wait)] if wait is not None else []
        )
        env = {"COUNTERSIGN_URL": url, "COUNTERSIGN_API_KEY": raw_key}
        async with Client(
            StdioServerParameters(command=COUNTERSIGN_MCP, args=args, env=env), mode=mode
        ) as client:
            yield client
        return
    query = urlencode([("approver", approver)] * bool(approver) + [("wait", wait)] * (wait is not None))
    async with (
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {raw_key}"}, timeout=httpx2.Timeout(30, read=120)
        ) as http,
        Client(streamable_http_client(f"{url}/mcp?{query}", http_client=http), mode=mode) as client,
    ):
        yield client


def run(scenario):
    """Run an async scenario to its end; the test's own thread is free for the database."""
    return anyio.run(scenario)


async def in_thread(function, *args, **kwargs):
    """Database work from the scenario: in a thread, with its connection closed after."""

    def work():
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    return await anyio.to_thread.run_sync(work)


async def call(client: Client, tool: str, **arguments) -> dict:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    if tool == "permission_prompt":  # Claude Code reads a JSON string in the text
        return json.loads(result.content[0].text)
    return result.structured_content


async def refused(client: Client, tool: str, **arguments) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    return result.content[0].text


# --- one surface, two transports ----------------------------------------------------------


def test_the_sdk_and_the_service_share_one_tool_surface_text():
    """The two servers' shared block (schemas, descriptions, answers) is the same code."""

    def shared(path: Path) -> str:
        text = path.read_text()
        return text[text.index("# >>> shared tool surface") : text.index("# <<< shared tool surface")].strip()

    assert shared(ROOT / "sdk/python/src/countersign/mcp.py") == shared(ROOT / "decisions/mcp_tools.py")


def test_both_transports_list_the_same_five_tools_and_none_answers_a_decision(service, acme_key):
    async def tools(transport: str) -> dict:
        async with connect(transport, service, acme_key[1]) as client:
            listed = (await client.list_tools()).tools
            return {t.name: (t.description, t.input_schema, t.annotations) for t in listed}

    stdio, http = run(lambda: tools("stdio")), run(lambda: tools("http"))

    assert set(stdio) == TOOLS
    assert stdio == http
    # Nothing the asking agent can call says approve: no choice, no answer, and a timeout
    # cannot stand in for a person either.
    for _, schema, _ in stdio.values():
        assert not {"choice", "answer", "approve"} & set(schema["properties"])
    on_timeout = stdio["request_approval"][1]["properties"]["on_timeout"]
    assert "approve" not in json.dumps(on_timeout)


# --- request_approval, wait_for_decision, get_decision, cancel_decision -----------------------


def test_request_approval_waits_for_alices_click(service, acme_key, transport):
    async def scenario():
        async with connect(transport, service, acme_key[1]) as client:
            asking = asyncio.ensure_future(
                call(
                    client,
                    "request_approval",
                    action="Deploy v1.2 to prod",
                    details={"version": "1.2", "service": "api"},
                    context="The release notes are in #releases.",
                    timeout_minutes=30,
                    wait_seconds=60,
                )
            )
            decision = await in_thread(newest_decision, "Deploy v1.2")
            await in_thread(clicks, ALICE, decision.id, "approve", note="go")
            return decision, await asyncio.wait_for(asking, 30)

    decision, answer = run(scenario)

    assert answer["decision_id"] == decision.id
    assert answer["status"] == "approved"
    assert answer["approved"] is True
    assert answer["asked"] == [ALICE]  # the server's default approver (--approver / ?approver=)
    assert answer["outcome"]["by"] == ALICE
    assert answer["outcome"]["via"] == "email"
    assert answer["outcome"]["note"] == "go"
    assert answer["details"] == {"version": "1.2", "service": "api"}
    assert answer["message"].startswith(f"Approved by {ALICE} via email.")
    # It went through the service like any API call: the key's actor created it.
    decision.refresh_from_db()
    assert decision.context == "The release notes are in #releases."
    created = AuditEvent.objects.get(decision_id=decision.id, event="decision.created")
    assert created.actor == acme_key[0].actor


def test_after_its_bound_request_approval_says_pending_and_wait_for_decision_gets_the_answer(
    service, acme_key, transport
):
    async def scenario():
        async with connect(transport, service, acme_key[1]) as client:
            first = await call(
                client,
                "request_approval",
                action="Refund $120 to order #1042",
                approvers=[BOB],
                wait_seconds=0.5,
            )
            await in_thread(clicks, BOB, first["decision_id"], "deny", note="duplicate order")
            return first, await call(
                client, "wait_for_decision", decision_id=first["decision_id"], wait_seconds=20
            )

    first, later = run(scenario)

    assert first["status"] == "pending"
    assert first["approved"] is False
    assert first["outcome"] is None
    assert first["asked"] == [BOB]  # named in the call, so the default approver is not asked
    assert f"call wait_for_decision with decision_id {first['decision_id']}" in first["message"]
    assert later["status"] == "denied"
    assert later["approved"] is False
    assert later["outcome"]["note"] == "duplicate order"
    assert later["message"] == f"Denied by {BOB} via email. Do not go ahead. Note: duplicate order"


def test_request_approval_passes_who_the_agent_acts_for_and_how_sure_to_be_of_the_approver(
    service, acme_key, transport
):
    # given: carol asked the agent for a refund; alice approves it by her email link, and a
    # deploy needs a passkey, which no link can give
    async def scenario():
        async with connect(transport, service, acme_key[1]) as client:
            tools = {t.name: t.input_schema for t in (await client.list_tools()).tools}
            refund = await call(
                client,
                "request_approval",
                action="Refund $120 to order #1042",
                requested_by="carol@example.com",
                verification="link",
                wait_seconds=0,
            )
            await in_thread(clicks, ALICE, refund["decision_id"], "approve")
            refunded = await call(
                client, "wait_for_decision", decision_id=refund["decision_id"], wait_seconds=20
            )
            deploy = await call(
                client,
                "request_approval",
                action="Deploy v1.2 to prod",
                verification="passkey",
                wait_seconds=0,
            )
            return tools["request_approval"]["properties"], refunded, deploy

    properties, refunded, deploy = run(scenario)

    assert "never asked and can never approve it" in properties["requested_by"]["description"]
    assert "passkey" in json.dumps(properties["verification"])
    refund = Decision.objects.get(id=refunded["decision_id"])
    assert refund.requested_by == "carol@example.com"
    assert refund.verification == "link"
    assert refunded["status"] == "approved"
    assert refunded["outcome"]["by"] == ALICE
    assert refunded["outcome"]["verified"] == "link"
    assert deploy["status"] == "pending"
    assert Decision.objects.get(id=deploy["decision_id"]).verification == "passkey"


def test_the_same_idempotency_key_asks_once(service, acme_key, transport):
    ask = {"action": "Rotate the database password", "idempotency_key": "rotate-2030-01", "wait_seconds": 0}

    async def scenario():
        async with connect(transport, service, acme_key[1]) as client:
            return await call(client, "request_approval", **ask), await call(
                client, "request_approval", **ask
            )

    first, again = run(scenario)

    assert first["decision_id"] == again["decision_id"]
    assert Decision.objects.filter(action="Rotate the database password").count() == 1


def test_get_and_cancel_a_decision_and_what_they_refuse(service, acme_key, globex_key, transport):
    async def scenario():
        async with connect(transport, service, acme_key[1]) as client:
            asked = await call(client, "request_approval", action="Close account #77", wait_seconds=0)
            decision_id = asked["decision_id"]
            now = await call(client, "get_decision", decision_id=decision_id)
            cancelled = await call(client, "cancel_decision", decision_id=decision_id)
            again = await refused(client, "cancel_decision", decision_id=decision_id)
            unknown = await refused(client, "get_decision", decision_id="dec_nosuchthing")
            garbage = await refused(client, "get_decision", decision_id="dec_\x00; DROP")
            invalid = await refused(client, "request_approval", action="Pay", approvers=["not an address"])
        async with connect(transport, service, globex_key[1]) as other_tenant:
            hidden = await refused(other_tenant, "get_decision", decision_id=decision_id)
        return now, cancelled, again, unknown, garbage, invalid, hidden, decision_id

    now, cancelled, again, unknown, garbage, invalid, hidden, decision_id = run(scenario)

    assert now["status"] == "pending"
    assert cancelled["status"] == "cancelled"
    assert cancelled["outcome"]["by"] == acme_key[0].actor
    assert Decision.objects.get(pk=decision_id).status == "cancelled"
    assert "already_resolved" in again
    assert "not_found" in unknown
    assert "decision_id" in garbage  # refused by the schema, before the database sees it
    assert "invalid" in invalid
    assert "approvers" in invalid
    assert "not_found" in hidden  # another tenant's decision does not exist for Globex


# --- permission_prompt (Claude Code's --permission-prompt-tool) -------------------------------

COMMAND = {"command": "rm -rf build", "description": "Clean the build directory"}


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # legacy: the handshake Claude Code speaks today
def test_a_permission_prompt_is_allowed_with_the_input_alice_edited(service, acme_key, transport, mode):
    async def scenario():
        async with connect(transport, service, acme_key[1], mode=mode) as client:
            asking = asyncio.ensure_future(
                call(client, "permission_prompt", tool_name="Bash", input=COMMAND, tool_use_id="toolu_01")
            )
            decision = await in_thread(newest_decision, "Run Bash")
            await in_thread(clicks, ALICE, decision.id, "approve", detail__command="rm -rf build/tmp")
            return decision, await asyncio.wait_for(asking, 30)

    decision, answer = run(scenario)

    assert answer == {
        "behavior": "allow",
        "updatedInput": {"command": "rm -rf build/tmp", "description": "Clean the build directory"},
    }
    assert decision.action == "Run Bash: Clean the build directory"
    assert decision.details == COMMAND
    assert decision.allow_edit


def test_a_pending_permission_prompt_is_denied_and_asking_again_picks_up_the_approval(
    service, acme_key, transport
):
    prompt = {
        "tool_name": "Write",
        "input": {"file_path": "/etc/motd", "content": "hi"},
        "tool_use_id": "toolu_02",
    }

    async def scenario():
        async with connect(transport, service, acme_key[1], wait=1) as client:
            first = await call(client, "permission_prompt", **prompt)
            decision = await in_thread(newest_decision, "Run Write")
            await in_thread(clicks, ALICE, decision.id, "approve")
            return first, await call(client, "permission_prompt", **prompt)

    first, again = run(scenario)

    assert first["behavior"] == "deny"  # pending is never allow
    assert f"{ALICE} did not answer within 1 s" in first["message"]
    assert again == {"behavior": "allow", "updatedInput": prompt["input"]}
    assert Decision.objects.filter(action__startswith="Run Write").count() == 1  # asked once


def test_denied_or_expired_permission_prompts_are_denied_with_the_reason(service, acme_key, transport):
    async def scenario():
        async with connect(transport, service, acme_key[1]) as client:
            asking = asyncio.ensure_future(
                call(client, "permission_prompt", tool_name="Bash", input={"command": "git push -f"})
            )
            decision = await in_thread(newest_decision, "git push")
            await in_thread(clicks, ALICE, decision.id, "deny", note="never force-push main")
            denied = await asyncio.wait_for(asking, 30)

            asking = asyncio.ensure_future(
                call(client, "permission_prompt", tool_name="Bash", input={"command": "make deploy"})
            )
            decision = await in_thread(newest_decision, "make deploy")
            await in_thread(time_runs_out, decision.id)
            return denied, await asyncio.wait_for(asking, 30)

    denied, expired = run(scenario)

    assert denied == {
        "behavior": "deny",
        "message": f"Bash was not run. Denied by {ALICE} via email. Note: never force-push main",
    }
    assert expired == {"behavior": "deny", "message": "Bash was not run. Expired: nobody answered in time."}


def time_runs_out(decision_id: str) -> None:
    Decision.objects.filter(pk=decision_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    decision_expire(decision_id=decision_id)


def test_a_policy_routes_permission_prompts_when_the_server_names_no_approver(
    service, acme, acme_key, transport
):
    Policy.objects.create(
        organization=acme,
        name="agent-tools",
        position=1,
        conditions=[{"field": "action", "op": "startswith", "value": "Run "}],
        action=Policy.Action.ROUTE,
        approvers=[BOB],
    )

    async def scenario():
        async with connect(transport, service, acme_key[1], approver=None, wait=0) as client:
            return await call(
                client, "permission_prompt", tool_name="WebFetch", input={"url": "https://x.test"}
            )

    answer = run(scenario)

    assert answer["behavior"] == "deny"
    assert f"{BOB} did not answer" in answer["message"]
    assert list(newest_decision("WebFetch").requests.values_list("address", flat=True)) == [BOB]


# --- the answers, as both servers compute them --------------------------------------------


def decision_json(status: str, **outcome) -> dict:
    return {
        "id": "dec_1",
        "status": status,
        "action": "Run Bash: ls",
        "details": {"command": "ls"},
        "action_hash": "asked",
        "expires_at": "2030-01-01T00:00:00Z",
        "requests": [{"address": ALICE, "state": "pending" if status == "pending" else "closed"}],
        "outcome": None if status == "pending" else {"status": status, "action_hash": "asked", **outcome},
    }


@pytest.mark.parametrize(
    ("decision", "allowed"),
    [
        (decision_json("approved", by=ALICE, via="email", details={"command": "ls"}), True),
        (decision_json("approved", by="policy:safe", via="policy", details={"command": "ls"}), True),
        (decision_json("approved", by="system", via="timeout", details={"command": "ls"}), False),
        (decision_json("pending"), False),
        (decision_json("denied", by=ALICE, via="slack"), False),
        (decision_json("responded", by=ALICE, via="email", choice="later"), False),
        (decision_json("expired", by="system", via="timeout"), False),
        (decision_json("cancelled", by="api_key:cs_x", via="api"), False),
    ],
)
def test_only_an_approval_by_a_person_or_a_policy_allows(decision, allowed):
    for implementation in (sdk_mcp, mcp_tools):
        answer = implementation.permission_answer(
            decision, tool_name="Bash", tool_input={"command": "ls"}, waited=5
        )
        assert (answer["behavior"] == "allow") is allowed
        assert answer == sdk_mcp.permission_answer(
            decision, tool_name="Bash", tool_input={"command": "ls"}, waited=5
        )
        assert implementation.decision_summary(decision) == sdk_mcp.decision_summary(decision)


# --- /mcp over HTTP: the API's door ----------------------------------------------------------

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def post_mcp(url: str, raw_key: str | None = None, *, query: str = "", **headers) -> httpx.Response:
    auth = {"Authorization": f"Bearer {raw_key}"} if raw_key else {}
    return httpx.post(
        f"{url}/mcp{query}", json=INITIALIZE, headers={**MCP_HEADERS, **auth, **headers}, timeout=30
    )


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    return error


def test_mcp_over_http_needs_a_valid_key_with_the_decisions_scope(service, acme, acme_key):
    audit_only = api_key_create(organization=acme, scopes=["audit"], name="auditor")[1]

    assert_error(post_mcp(service), 401, "not_authenticated")
    bad = post_mcp(service, "cs_not-a-key")
    assert_error(bad, 401, "authentication_failed")
    assert bad.headers["WWW-Authenticate"] == 'Bearer realm="countersign"'
    assert_error(post_mcp(service, audit_only), 403, "permission_denied")
    assert post_mcp(service, acme_key[1]).status_code == 200


def test_mcp_over_http_refuses_a_foreign_host_and_bad_defaults(service, acme_key):
    assert_error(post_mcp(service, acme_key[1], Host="evil.example"), 400, "bad_request")
    assert "wait" in assert_error(post_mcp(service, acme_key[1], query="?wait=601"), 400, "invalid")["fields"]
    assert "wait" in assert_error(post_mcp(service, acme_key[1], query="?wait=nan"), 400, "invalid")["fields"]
    error = assert_error(post_mcp(service, acme_key[1], query="?approver=nobody"), 400, "invalid")
    assert "approver" in error["fields"]
    assert (
        "tenant" in assert_error(post_mcp(service, acme_key[1], query="?tenant=1"), 400, "invalid")["fields"]
    )


def test_mcp_and_the_api_share_the_keys_rate_limit(service, acme_key, monkeypatch):
    monkeypatch.setitem(ApiKeyRateThrottle.THROTTLE_RATES, "api_key", "3/min")
    auth = {"Authorization": f"Bearer {acme_key[1]}"}

    assert httpx.get(f"{service}/decisions", headers=auth).status_code == 200
    assert httpx.get(f"{service}/decisions", headers=auth).status_code == 200
    assert post_mcp(service, acme_key[1]).status_code == 200
    limited = post_mcp(service, acme_key[1])

    assert_error(limited, 429, "rate_limited")
    assert re.fullmatch(r"\d+", limited.headers["Retry-After"])
    assert_error(httpx.get(f"{service}/decisions", headers=auth), 429, "rate_limited")


def test_the_long_poll_still_answers_beside_mcp(service, acme_key):
    """Django's requests pass through broker/asgi.py untouched: ?wait still holds and answers."""
    auth = {"Authorization": f"Bearer {acme_key[1]}"}
    created = httpx.post(
        f"{service}/decisions", json={"action": "Ship it", "approver": ALICE}, headers=auth, timeout=30
    ).json()

    async def scenario():
        async with httpx.AsyncClient(headers=auth, timeout=30) as http:
            waiting = asyncio.ensure_future(
                http.get(f"{service}/decisions/{created['id']}", params={"wait": 20})
            )
            await asyncio.sleep(0.5)
            assert not waiting.done()
            await in_thread(clicks, ALICE, created["id"], "approve")
            return (await asyncio.wait_for(waiting, 15)).json()

    assert run(scenario)["status"] == "approved"


def test_the_mcp_agent_example_runs_the_command_as_alice_edited_it(service, acme_key):
    example = ROOT / "sdk/python/examples/mcp_agent.py"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "COUNTERSIGN_URL": service,
        "COUNTERSIGN_API_KEY": acme_key[1],
    }
    agent = subprocess.Popen(
        [sys.executable, str(example), "rm -rf build"], env=env, stdout=subprocess.PIPE, text=True
    )
    decision = newest_decision("Run Bash")
    clicks(ALICE, decision.id, "approve", detail__command="rm -rf build/cache")

    out, _ = agent.communicate(timeout=60)

    assert agent.returncode == 0
    assert out.splitlines()[-1] == "3. allowed: would run 'rm -rf build/cache'"
