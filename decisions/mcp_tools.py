"""Countersign's MCP tools, served by the service itself at /mcp (streamable HTTP; the
endpoint, its API-key auth and rate limit are broker/mcp_http.py).

The tools are a face of the decision API, like decisions/apis.py: they validate with the
API's own serializer and go through decisions/services/, and they wait for answers on the
long-poll's hub (decisions/waiting.py), holding no thread and no database connection.

The tool surface — names, argument schemas, answers — is the one the Python SDK's stdio
server (`countersign-mcp`, sdk/python/src/countersign/mcp.py) serves over the REST API: the
block between the two markers below is the same text in both, and tests/test_mcp.py holds the
two servers to the same schemas and answers. No tool answers a decision.
"""

import hashlib
import json
from typing import Annotated, Any, Literal

from asgiref.sync import sync_to_async
from django.db import connections
from mcp.server.mcpserver import Context as ToolContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer

from broker.errors import DomainError, _first_message
from broker.http import UntrustedJSONError, parse_untrusted_json
from decisions import selectors, services, waiting
from decisions.apis import check_idempotency_key
from decisions.serializers import DecisionOutput, decision_spec_from
from organizations.models import ApiKey

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


# --- the service's tools, over decisions/services/ --------------------------------------


def _in_a_thread(function):
    """Run ORM code in the shared thread pool and hand its connection back at once, as the
    long-poll does (decisions/apis.py): a waiting tool call holds no thread and no connection."""

    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    return sync_to_async(call, thread_sensitive=False)


def _as_json(decision) -> dict[str, Any]:
    """The decision object exactly as GET /decisions/{id} gives it."""
    return json.loads(JSONRenderer().render(DecisionOutput(decision).data))


def _refused(exc: Exception) -> ToolError:
    if isinstance(exc, DomainError):
        return tool_error(exc.code, exc.message, exc.fields)
    detail = exc.detail if isinstance(exc, ValidationError) else str(exc)
    fields = detail if isinstance(detail, dict) else {}
    return tool_error("invalid", _first_message(detail), json.loads(json.dumps(fields, default=str)))


@_in_a_thread
def _create(api_key: ApiKey, body: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    # What POST /decisions does, step for step (decisions/apis.py), on the same body.
    try:
        body = parse_untrusted_json(json.dumps(body))  # what the API's JSON parser refuses, refused
        idempotency_key = check_idempotency_key(idempotency_key)
        spec = decision_spec_from(body)
        decision, _ = services.decision_create(
            api_key=api_key,
            idempotency_key=idempotency_key,
            fingerprint=services.request_fingerprint(body),
            spec=spec,
        )
        return _as_json(
            selectors.decision_get(organization_id=api_key.organization_id, decision_id=decision.pk)
        )
    except (DomainError, ValidationError, UntrustedJSONError) as exc:
        raise _refused(exc) from None


@_in_a_thread
def _read(api_key: ApiKey, decision_id: str) -> dict[str, Any]:
    try:
        return _as_json(
            selectors.decision_get(organization_id=api_key.organization_id, decision_id=decision_id)
        )
    except DomainError as exc:
        raise _refused(exc) from None


@_in_a_thread
def _cancel(api_key: ApiKey, decision_id: str) -> dict[str, Any]:
    try:
        decision = selectors.decision_get(organization_id=api_key.organization_id, decision_id=decision_id)
        services.decision_cancel(decision=decision, actor=api_key.actor)
        return _as_json(
            selectors.decision_get(organization_id=api_key.organization_id, decision_id=decision_id)
        )
    except DomainError as exc:
        raise _refused(exc) from None


async def _wait(api_key: ApiKey, decision_id: str, seconds: float) -> dict[str, Any]:
    """The long-poll's wait: interest is registered before the read, so an answer committed
    between the two still wakes us."""
    async with waiting.hub().watching(decision_id) as wait:
        data = await _read(api_key, decision_id)
        if data["status"] != "pending" or seconds <= 0:
            return data
        await wait(seconds)
    return await _read(api_key, decision_id)


class Caller:
    """Who calls, as broker/mcp_http.py authenticated them, and the defaults of their /mcp URL
    (`?approver=…&wait=…`)."""

    def __init__(self, api_key: ApiKey, approvers: list[str], wait: float) -> None:
        self.api_key, self.approvers, self.wait = api_key, approvers, wait


def _caller(ctx: ToolContext) -> Caller:
    request = ctx.request_context.request
    caller = getattr(getattr(request, "state", None), "countersign", None)
    if not isinstance(caller, Caller):
        raise tool_error("unauthenticated", "No API key: call /mcp with 'Authorization: Bearer <api key>'.")
    return caller


server = MCPServer("countersign", instructions=INSTRUCTIONS)


@server.tool(description=DESCRIPTIONS["request_approval"], annotations=ASKS)
async def request_approval(
    ctx: ToolContext,
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
    caller = _caller(ctx)
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
        default_approvers=caller.approvers,
    )
    created = await _create(caller.api_key, body, idempotency_key)
    if created["status"] != "pending":
        return decision_summary(created)
    seconds = caller.wait if wait_seconds is None else wait_seconds
    return decision_summary(await _wait(caller.api_key, created["id"], seconds))


@server.tool(description=DESCRIPTIONS["wait_for_decision"], annotations=READ_ONLY)
async def wait_for_decision(
    ctx: ToolContext, decision_id: DecisionId, wait_seconds: WaitSeconds = None
) -> dict[str, Any]:
    caller = _caller(ctx)
    seconds = caller.wait if wait_seconds is None else wait_seconds
    return decision_summary(await _wait(caller.api_key, decision_id, seconds))


@server.tool(description=DESCRIPTIONS["get_decision"], annotations=READ_ONLY)
async def get_decision(ctx: ToolContext, decision_id: DecisionId) -> dict[str, Any]:
    return decision_summary(await _read(_caller(ctx).api_key, decision_id))


@server.tool(description=DESCRIPTIONS["cancel_decision"], annotations=CANCELS)
async def cancel_decision(ctx: ToolContext, decision_id: DecisionId) -> dict[str, Any]:
    return decision_summary(await _cancel(_caller(ctx).api_key, decision_id))


# Claude Code reads the answer from the text content: a JSON string, not structured output.
@server.tool(description=DESCRIPTIONS["permission_prompt"], annotations=ASKS, structured_output=False)
async def permission_prompt(
    ctx: ToolContext, tool_name: ToolName, input: ToolInput, tool_use_id: ToolUseId = None
) -> str:
    caller = _caller(ctx)
    body, key = permission_body(
        tool_name=tool_name, tool_input=input, tool_use_id=tool_use_id, default_approvers=caller.approvers
    )
    created = await _create(caller.api_key, body, key)
    data = (
        created if created["status"] != "pending" else await _wait(caller.api_key, created["id"], caller.wait)
    )
    return json.dumps(permission_answer(data, tool_name=tool_name, tool_input=input, waited=caller.wait))
