"""Countersign for Python: ask a person to sign off, by email or Slack, and get the answer.

The LangGraph integration lives in `countersign.langgraph` (install `countersign[langgraph]`).
"""

from countersign._base import DecisionFields, __version__
from countersign.async_client import AsyncCountersign
from countersign.client import Countersign
from countersign.errors import (
    APIError,
    ApprovalTimeout,
    AuthenticationError,
    Conflict,
    ConnectionFailed,
    CountersignError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    WebhookVerificationError,
)
from countersign.models import ApprovalRequest, Decision, DecisionPage, Outcome, WebhookEvent
from countersign.webhooks import verify_webhook

__all__ = [
    "APIError",
    "ApprovalRequest",
    "ApprovalTimeout",
    "AsyncCountersign",
    "AuthenticationError",
    "Conflict",
    "ConnectionFailed",
    "Countersign",
    "CountersignError",
    "Decision",
    "DecisionFields",
    "DecisionPage",
    "InvalidRequest",
    "NotFound",
    "Outcome",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "WebhookEvent",
    "WebhookVerificationError",
    "__version__",
    "verify_webhook",
]
