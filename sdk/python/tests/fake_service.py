"""A fake Countersign for httpx.MockTransport, so the SDK's own tests need no server.

It keeps decisions in memory and answers like the real API does (the decision object, the
error body, Idempotency-Key replays). Tests play the approvers with `service.answer(...)`.
Named actors: Acme's agent asks; alice approves; bob is the backup.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

ALICE = "alice@example.com"
BOB = "bob@example.com"
API_KEY = "cs_test_acme_agent_key"
BASE_URL = "https://countersign.test"
WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

DEFAULT_CHOICE = {"approved": "approve", "denied": "deny"}
_DETAIL = re.compile(r"^/decisions/(dec_[0-9a-z]+)$")
_CANCEL = re.compile(r"^/decisions/(dec_[0-9a-z]+)/cancel$")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def action_hash(action: str, details: dict) -> str:
    return hashlib.sha256(canonical({"action": action, "details": details}).encode()).hexdigest()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class FakeCountersign:
    """An in-memory Countersign for one organization."""

    def __init__(self) -> None:
        self.decisions: dict[str, dict[str, Any]] = {}
        self.seen: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []  # every POST /decisions body, in order
        self._keys: dict[str, tuple[str, str]] = {}  # Idempotency-Key -> (fingerprint, id)
        # Scripted trouble for the next requests: an exception to raise or a response to give.
        self.trouble: list[Exception | httpx.Response] = []
        # Called when a long-poll finds its decision pending: the moment to "click".
        self.while_waiting: Callable[[str], None] | None = None
        # A stand-in for the organization's policy: may resolve a decision as it is created.
        self.policy: Callable[[dict[str, Any]], tuple[str, str] | None] | None = None
        # Away approvers and their delegates: asking alice asks bob, on her behalf.
        self.delegates: dict[str, str] = {}

    # --- the API ----------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.trouble:
            trouble = self.trouble.pop(0)
            if isinstance(trouble, Exception):
                raise trouble
            return trouble
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return error(401, "unauthenticated", "Missing or invalid API key.")
        path = request.url.path
        if path == "/decisions" and request.method == "POST":
            return self._create(request)
        if path == "/decisions" and request.method == "GET":
            return self._list(request)
        if (match := _DETAIL.match(path)) and request.method == "GET":
            return self._get(match[1], request)
        if (match := _CANCEL.match(path)) and request.method == "POST":
            return self._cancel(match[1])
        return error(404, "not_found", "Not found.")

    def _create(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        key = request.headers.get("idempotency-key")
        fingerprint = canonical(body)
        if key in self._keys:
            first_fingerprint, decision_id = self._keys[key]
            if first_fingerprint != fingerprint:
                return error(409, "idempotency_conflict", "Idempotency-Key used with a different body.")
            return httpx.Response(200, json=self.decisions[decision_id])
        if not isinstance(body.get("action"), str) or not body["action"]:
            return error(400, "invalid", "Invalid input.", {"action": ["This field is required."]})
        decision_id = f"dec_{len(self.decisions) + 1:04d}"
        now = datetime.now(UTC)
        details = body.get("details", {})
        approver = body.get("approver", ALICE)
        delegate = self.delegates.get(approver)
        self.decisions[decision_id] = {
            "id": decision_id,
            "status": "pending",
            "action": body["action"],
            "context": body.get("context", ""),
            "details": details,
            "options": body.get("options", ["approve", "deny"]),
            "response": body.get("response", "choice"),
            "allow_edit": body.get("allow_edit", False),
            "urgency": body.get("urgency", "normal"),
            "verification": body.get("verification", "link"),
            "requested_by": body.get("requested_by", ""),  # as the service: "" for none
            "distinct_stage_approvers": body.get("distinct_stage_approvers", True),
            "created_at": iso(now),
            "expires_at": iso(now + timedelta(minutes=body.get("timeout_minutes", 60))),
            "resolved_at": None,
            "metadata": body.get("metadata", {}),
            "callback_url": body.get("callback_url"),
            "action_hash": action_hash(body["action"], details),
            "outcome": None,
            "response_notes": None,
            "requests": [
                {
                    "address": delegate or approver,
                    "channel": "email",
                    "on_behalf_of": approver if delegate else None,
                    "stage": 0,
                    "level": 0,
                }
            ],
            "policy": None,
        }
        if key:
            self._keys[key] = (fingerprint, decision_id)
        if self.policy and (ruling := self.policy(body)):
            status, rule = ruling
            self.answer(decision_id, status, by=f"policy:{rule}", via="policy")
        return httpx.Response(201, json=self.decisions[decision_id])

    def _get(self, decision_id: str, request: httpx.Request) -> httpx.Response:
        if decision_id not in self.decisions:
            return error(404, "not_found", "Not found.")
        wait = float(request.url.params.get("wait", 0) or 0)
        if wait and self.decisions[decision_id]["status"] == "pending" and self.while_waiting:
            self.while_waiting(decision_id)
        return httpx.Response(200, json=self.decisions[decision_id])

    def _cancel(self, decision_id: str) -> httpx.Response:
        decision = self.decisions.get(decision_id)
        if decision is None:
            return error(404, "not_found", "Not found.")
        if decision["status"] != "pending":
            return error(409, "already_resolved", f"Decision {decision_id} is already {decision['status']}.")
        self.answer(decision_id, "cancelled", by="acme agent", via="api")
        return httpx.Response(200, json=decision)

    def _list(self, request: httpx.Request) -> httpx.Response:
        newest_first = sorted(self.decisions.values(), key=lambda d: d["id"], reverse=True)
        if status := request.url.params.get("status"):
            newest_first = [d for d in newest_first if d["status"] == status]
        limit = int(request.url.params.get("limit", 50))
        start = int(request.url.params.get("cursor", 0))
        page = newest_first[start : start + limit]
        more = start + limit < len(newest_first)
        next_url = f"{BASE_URL}/decisions?cursor={start + limit}&limit={limit}" if more else None
        return httpx.Response(200, json={"next": next_url, "previous": None, "results": page})

    # --- playing the approvers --------------------------------------------------------------

    def answer(
        self,
        decision_id: str,
        status: str,
        *,
        choice: str | None = None,
        text: str | None = None,
        note: str | None = None,
        details: dict | None = None,
        by: str = ALICE,
        via: str = "email",
        verified: str | None = None,
    ) -> dict[str, Any]:
        """`verified`: how the person who answered was verified; by default "link" when a person
        answered (email, Slack, the portal), as the service says, and None otherwise."""
        decision = self.decisions[decision_id]
        final = decision["details"] if details is None else details
        now = iso(datetime.now(UTC))
        decision.update(
            status=status,
            resolved_at=now,
            response_notes=note,
            outcome={
                "status": status,
                "choice": choice if choice is not None else DEFAULT_CHOICE.get(status),
                "text": text,
                "note": note,
                "by": by,
                "via": via,
                "at": now,
                "details": final,
                "action_hash": action_hash(decision["action"], final),
                "verified": verified or ("link" if via in ("email", "slack", "web") else None),
            },
        )
        return decision

    def only(self) -> dict[str, Any]:
        assert len(self.decisions) == 1, list(self.decisions)
        return next(iter(self.decisions.values()))

    def signed_callback(self, decision_id: str, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
        """The callback Countersign would POST for this decision: body and headers."""
        decision = self.decisions[decision_id]
        event = {"type": "decision.resolved", "timestamp": decision["resolved_at"], "data": decision}
        body = canonical(event)
        msg_id, now = f"msg_{decision_id}", datetime.now(UTC)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, body),
        }
        return body.encode(), headers


def error(status: int, code: str, message: str, fields: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "fields": fields or {}}})
