"""Countersign as an MCP server over stdio: `countersign-mcp` (`pip install "countersign[mcp]"`).

Any MCP client (Claude Code, Cursor, an IDE agent) gets tools to ask a person to sign off and
to learn the answer; this process talks to Countersign's REST API with COUNTERSIGN_URL and
COUNTERSIGN_API_KEY. The service serves the very same tools itself, over streamable HTTP, at
/mcp (decisions/mcp_tools.py there); tests hold the two to the same schemas and answers.

    claude mcp add countersign -e COUNTERSIGN_API_KEY=cs_... -- countersign-mcp --approver alice@example.com
    claude -p "..." --permission-prompt-tool mcp__countersign__permission_prompt

No tool answers a decision: the agent that asks can wait, read or cancel, never approve. A
decision still pending, expired or cancelled is never "allow".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from typing import Annotated, Any, Literal

try:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp_types import ToolAnnotations
    from pydantic import Field
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError('countersign.mcp needs the MCP SDK: pip install "countersign[mcp]"') from exc

from countersign import errors
from countersign.async_client import AsyncCountersign

# >>> shared tool surface: the same text in countersign/mcp.py (SDK) and decisions/mcp_tools.py (service)

DEFAULT_WAIT_SECONDS = 45.0  # many MCP clients give up on a tool call after 60 s
MAX_WAIT_SECONDS = 600.0

INSTRUCTIONS = (
    "Countersign asks a person to sign off before you act, by email, Slack or Teams, and tells you "
    "their answer. Call request_approval before any action that needs a human's approval and "
    "go ahead only if it answers approved: true, with the details it returns (the approver may "
    "have edited them). While it is pending, call wait_for_decision with its decision_id. "
    "You cannot approve a decision yourself."
)

Action = Annotated[str, Field(min_length=1, max_length=500, description="What you want to do, in one line.")]
Details = Annotated[
    dict[str, Any] | None,
    Field(description="Key/value facts shown to the approver (amount, customer, version, …)."),
]
Context = Annotated[
    str | None, Field(max_length=20_000, description="Why, shown to the approver as plain text.")
]
Approvers = Annotated[
    list[str] | None,
    Field(
        max_length=50,
        description=(
            "Who to ask: email addresses, slack:U123 (a Slack user), slack:#channel, teams:29:… or "
            "teams:<Entra object id> (a Teams user), teams:19:… (a Teams channel) or group:<name>. "
            "Leave out to use the server's default approvers or the organization's policy."
        ),
    ),
]
TimeoutMinutes = Annotated[
    float | None,
    Field(gt=0, description="Minutes before the decision stops waiting (default: the organization's)."),
]
OnTimeout = Annotated[
    Literal["expire", "deny"] | None,
    Field(description="The outcome if nobody answers in time: expire (default) or deny."),
]
IdempotencyKey = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=255,
        description="Asking again with the same key and arguments returns the same decision, not a new one.",
    ),
]
Urgency = Annotated[
    Literal["low", "normal", "high", "critical"] | None, Field(description="Shown to the approver.")
]
AllowEdit = Annotated[bool | None, Field(description="Let the approver change the details before approving.")]
RequestedBy = Annotated[
    str | None,
    Field(
        max_length=320,
        description=(
            "The email address of the person you act for (who asked you to do this). They are "
            "never asked and can never approve it: nobody signs off their own request."
        ),
    ),
]
Verification = Annotated[
    Literal["link", "session", "passkey"] | None,
    Field(
        description=(
            "How sure Countersign must be of who answers: link (default) takes a click in the "
            "email or Slack; session only an answer in the approver portal, freshly signed in; "
            "passkey only an answer in the portal confirmed with the approver's passkey."
        )
    ),
]
WaitSeconds = Annotated[
    float | None,
    Field(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="How long to wait for the answer before returning pending (default: the server's).",
    ),
]
DecisionId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The decision_id returned by request_approval.",
    ),
]
ToolName = Annotated[str, Field(min_length=1, max_length=200, description="The tool the agent wants to run.")]
ToolInput = Annotated[dict[str, Any], Field(description="The tool's input.")]
ToolUseId = Annotated[str | None, Field(max_length=255, description="The id of this tool use.")]

DESCRIPTIONS = {
    "request_approval": (
        "Ask a person to approve an action, and wait for their answer (up to wait_seconds). "
        "Returns the decision: go ahead only if approved is true, using the returned details. "
        "If status is still pending, call wait_for_decision with the decision_id."
    ),
    "wait_for_decision": (
        "Wait for a decision's answer (up to wait_seconds) and return it; status stays pending "
        "if nobody has answered yet."
    ),
    "get_decision": "Read a decision as it is now, without waiting.",
    "cancel_decision": "Withdraw a pending decision: nobody can answer it any more.",
    "permission_prompt": (
        "Claude Code's --permission-prompt-tool: asks a person whether the agent may run a tool "
        'and answers {"behavior": "allow", "updatedInput": …} or {"behavior": "deny", "message": …}.'
    ),
}
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ASKS = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
CANCELS = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def approval_body(
    *,
    action: str,
    details: dict[str, Any] | None,
    context: str | None,
    approvers: list[str] | None,
    timeout_minutes: float | None,
    on_timeout: str | None,
    urgency: str | None,
    allow_edit: bool | None,
    default_approvers: list[str],
    requested_by: str | None = None,
    verification: str | None = None,
) -> dict[str, Any]:
    """POST /decisions' body for request_approval: only what was given, so a policy fills the rest."""
    body: dict[str, Any] = {"action": action}
    fields = {
        "context": context or None,
        "details": details,
        "approvers": approvers or default_approvers or None,
        "timeout_minutes": timeout_minutes,
        "on_timeout": on_timeout,
        "urgency": urgency,
        "allow_edit": allow_edit,
        "requested_by": requested_by,
        "verification": verification,
    }
    body.update({name: value for name, value in fields.items() if value is not None})
    return body


def _short(value: Any, limit: int) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def permission_body(
    *, tool_name: str, tool_input: Any, tool_use_id: str | None, default_approvers: list[str]
) -> tuple[dict[str, Any], str | None]:
    """The decision a permission prompt asks for, and its Idempotency-Key. The input becomes the
    details, editable when it is an object. The key is derived from the tool use, so asking
    again for the same tool use finds the same decision (and its answer); without a tool use id
    every prompt asks afresh, so an old approval never covers a new call."""
    editable = isinstance(tool_input, dict)
    details = tool_input if editable else {"input": tool_input}
    hint = next((details[k] for k in ("description", "command", "file_path", "url") if details.get(k)), None)
    action = f"Run {_short(tool_name, 200)}" + (f": {_short(hint, 280)}" if hint else "")
    body: dict[str, Any] = {
        "action": action,
        "context": f"An agent asks for permission to run the tool {tool_name}.",
        "details": details,
        "allow_edit": editable and bool(details),
        "metadata": {"permission_prompt": {"tool_name": tool_name, "tool_use_id": tool_use_id}},
    }
    if default_approvers:
        body["approvers"] = default_approvers
    key = None
    if tool_use_id:
        key = "mcp-permission-" + hashlib.sha256(canonical_json(body).encode()).hexdigest()[:48]
    return body, key


def _asked(data: dict[str, Any], *, pending_only: bool) -> list[str]:
    addresses: list[str] = []
    for request in data.get("requests") or []:
        if pending_only and request.get("state") != "pending":
            continue
        if request.get("address") and request["address"] not in addresses:
            addresses.append(request["address"])
    return addresses


def decision_message(data: dict[str, Any]) -> str:
    """One or two sentences a model reads: what happened and what to do next."""
    status, outcome = data["status"], data.get("outcome") or {}
    by, via, note = outcome.get("by"), outcome.get("via"), outcome.get("note")
    said = f" Note: {note}" if note else ""
    if status == "pending":
        waiting_for = ", ".join(_asked(data, pending_only=True)) or "the approvers"
        return (
            f"Pending: waiting for {waiting_for} until {data.get('expires_at')}. Do not go ahead yet; "
            f"call wait_for_decision with decision_id {data['id']} to keep waiting."
        )
    if status == "approved":
        if via == "timeout":
            return "Approved by its on_timeout rule: nobody answered." + said
        edited = outcome.get("action_hash") and outcome.get("action_hash") != data.get("action_hash")
        return (
            f"Approved by {by} via {via}."
            + (" The approver edited the details: use the returned details." if edited else "")
            + said
        )
    if status == "denied":
        who = "nobody answered in time (on_timeout: deny)" if via == "timeout" else f"{by} via {via}"
        return f"Denied by {who}. Do not go ahead." + said
    if status == "responded":
        answer = outcome.get("text") or outcome.get("choice")
        return f"{by} answered via {via}: {answer}." + said
    if status == "expired":
        return "Expired: nobody answered in time. Do not go ahead."
    return f"Cancelled by {by}. Do not go ahead."


def decision_summary(data: dict[str, Any]) -> dict[str, Any]:
    """A decision (the API's JSON) as the tools return it."""
    outcome = data.get("outcome")
    return {
        "decision_id": data["id"],
        "status": data["status"],
        "approved": data["status"] == "approved",
        "action": data.get("action"),
        "details": (outcome or {}).get("details", data.get("details") or {}),
        "asked": _asked(data, pending_only=False),
        "expires_at": data.get("expires_at"),
        "outcome": (
            None
            if not outcome
            else {
                "status": outcome.get("status"),
                "choice": outcome.get("choice"),
                "text": outcome.get("text"),
                "note": outcome.get("note"),
                "by": outcome.get("by"),
                "via": outcome.get("via"),
                "at": outcome.get("at"),
                "verified": outcome.get("verified"),
                "edited": bool(outcome.get("action_hash"))
                and outcome.get("action_hash") != data.get("action_hash"),
            }
        ),
        "message": decision_message(data),
    }


def permission_answer(
    data: dict[str, Any], *, tool_name: str, tool_input: Any, waited: float
) -> dict[str, Any]:
    """Claude Code's answer. Allow only what a person or a policy approved; the input as they
    left it. Pending, expired, cancelled, denied, or approved by a timeout rule: deny."""
    outcome = data.get("outcome") or {}
    if data["status"] == "approved" and outcome.get("via") != "timeout":
        updated = outcome.get("details", tool_input) if isinstance(tool_input, dict) else tool_input
        return {"behavior": "allow", "updatedInput": updated}
    if data["status"] == "pending":
        waiting_for = ", ".join(_asked(data, pending_only=True)) or "the approvers"
        message = (
            f"Not approved yet: {waiting_for} did not answer within {waited:g} s. The request "
            f"({data['id']}) stays open until {data.get('expires_at')}; ask again later to pick up "
            f"the answer. Do not run {tool_name} until it is allowed."
        )
    else:
        message = f"{tool_name} was not run. " + decision_message(data).replace(" Do not go ahead.", "")
    return {"behavior": "deny", "message": message}


def tool_error(code: str, message: str, fields: dict[str, Any] | None = None) -> ToolError:
    return ToolError(f"{code}: {message}" + (f" Fields: {canonical_json(fields)}" if fields else ""))


# <<< shared tool surface


# --- the stdio server, over the REST API --------------------------------------------------


def build_server(
    client: AsyncCountersign, *, approvers: list[str] | None = None, wait: float = DEFAULT_WAIT_SECONDS
) -> MCPServer:
    """The MCP server over `client`. `approvers` are asked when a call names none (permission
    prompts never do; without them the organization's policy must route the decision); `wait`
    bounds how long a call waits for an answer unless it says otherwise."""
    default_approvers = list(approvers or [])
    server = MCPServer("countersign", instructions=INSTRUCTIONS)

    async def call(method, *args, **kwargs) -> dict[str, Any]:
        try:
            decision = await method(*args, **kwargs)
        except errors.APIError as exc:
            raise tool_error(exc.code, exc.message, exc.fields) from None
        except errors.CountersignError as exc:
            raise tool_error("unavailable", str(exc)) from None
        return decision.raw

    async def wait_for(decision_id: str, seconds: float) -> dict[str, Any]:
        if seconds <= 0:
            return await call(client.get, decision_id)
        return await call(client.wait, decision_id, timeout=seconds)

    @server.tool(description=DESCRIPTIONS["request_approval"], annotations=ASKS)
    async def request_approval(
        action: Action,
        details: Details = None,
        context: Context = None,
        approvers: Approvers = None,
        timeout_minutes: TimeoutMinutes = None,
        on_timeout: OnTimeout = None,
        urgency: Urgency = None,
        allow_edit: AllowEdit = None,
        requested_by: RequestedBy = None,
        verification: Verification = None,
        idempotency_key: IdempotencyKey = None,
        wait_seconds: WaitSeconds = None,
    ) -> dict[str, Any]:
        body = approval_body(
            action=action,
            details=details,
            context=context,
            approvers=approvers,
            timeout_minutes=timeout_minutes,
            on_timeout=on_timeout,
            urgency=urgency,
            allow_edit=allow_edit,
            requested_by=requested_by,
            verification=verification,
            default_approvers=default_approvers,
        )
        created = await call(client.create, idempotency_key=idempotency_key, **body)
        if created["status"] != "pending":
            return decision_summary(created)
        return decision_summary(await wait_for(created["id"], wait if wait_seconds is None else wait_seconds))

    @server.tool(description=DESCRIPTIONS["wait_for_decision"], annotations=READ_ONLY)
    async def wait_for_decision(decision_id: DecisionId, wait_seconds: WaitSeconds = None) -> dict[str, Any]:
        return decision_summary(await wait_for(decision_id, wait if wait_seconds is None else wait_seconds))

    @server.tool(description=DESCRIPTIONS["get_decision"], annotations=READ_ONLY)
    async def get_decision(decision_id: DecisionId) -> dict[str, Any]:
        return decision_summary(await call(client.get, decision_id))

    @server.tool(description=DESCRIPTIONS["cancel_decision"], annotations=CANCELS)
    async def cancel_decision(decision_id: DecisionId) -> dict[str, Any]:
        return decision_summary(await call(client.cancel, decision_id))

    # Claude Code reads the answer from the text content: a JSON string, not structured output.
    @server.tool(description=DESCRIPTIONS["permission_prompt"], annotations=ASKS, structured_output=False)
    async def permission_prompt(tool_name: ToolName, input: ToolInput, tool_use_id: ToolUseId = None) -> str:
        body, key = permission_body(
            tool_name=tool_name,
            tool_input=input,
            tool_use_id=tool_use_id,
            default_approvers=default_approvers,
        )
        created = await call(client.create, idempotency_key=key, **body)
        data = created if created["status"] != "pending" else await wait_for(created["id"], wait)
        return json.dumps(permission_answer(data, tool_name=tool_name, tool_input=input, waited=wait))

    return server


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= MAX_WAIT_SECONDS:
        raise argparse.ArgumentTypeError(f"from 0 to {MAX_WAIT_SECONDS:g} seconds")
    return value


def main(argv: list[str] | None = None) -> None:
    """`countersign-mcp`: serve the tools on stdin/stdout until the client closes them."""
    parser = argparse.ArgumentParser(
        prog="countersign-mcp",
        description="Countersign's MCP server over stdio. Reads COUNTERSIGN_URL and COUNTERSIGN_API_KEY.",
    )
    parser.add_argument(
        "--approver",
        action="append",
        default=None,
        help="ask this approver when a call names none (repeatable; default: COUNTERSIGN_APPROVERS, "
        "comma-separated)",
    )
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=None,
        help="seconds a call waits for the answer before returning pending "
        f"(default {DEFAULT_WAIT_SECONDS:g}, or COUNTERSIGN_MCP_WAIT)",
    )
    parser.add_argument("--url", default=None, help="Countersign's URL (default: COUNTERSIGN_URL)")
    args = parser.parse_args(argv)
    approvers = args.approver or [
        a.strip() for a in os.environ.get("COUNTERSIGN_APPROVERS", "").split(",") if a.strip()
    ]
    wait = args.wait
    if wait is None:
        try:
            wait = _seconds(os.environ.get("COUNTERSIGN_MCP_WAIT") or str(DEFAULT_WAIT_SECONDS))
        except (ValueError, argparse.ArgumentTypeError):
            parser.error(f"COUNTERSIGN_MCP_WAIT: a number of seconds from 0 to {MAX_WAIT_SECONDS:g}")
    try:
        client = AsyncCountersign(args.url)
    except errors.CountersignError as exc:
        parser.error(str(exc))
    build_server(client, approvers=approvers, wait=wait).run("stdio")


if __name__ == "__main__":
    main()
