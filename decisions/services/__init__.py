"""Writes for decisions, one module per verb: create, answer, cancel, resolve (the one way out
of pending), tick (the clock: reminders, escalations, expiry), link_views.

Every status change is a compare-and-set: UPDATE … WHERE status = 'pending'. Whoever updates
the row wins (a click, the timeout, a cancel); everyone else gets AlreadyResolved. The names
below are the package's public surface: import them from `decisions.services`.
"""

from decisions.services.answer import MAX_NOTE_LENGTH, MAX_TEXT_LENGTH, decision_answer
from decisions.services.asking import ask, asked_entries
from decisions.services.cancel import decision_cancel
from decisions.services.create import Route, decision_create, decision_route, decision_route_recipients
from decisions.services.errors import (
    AlreadyAnswered,
    AlreadyResolved,
    DeadlinePassed,
    IdempotencyConflict,
    SeparationOfDuties,
    VerificationRequired,
)
from decisions.services.fingerprints import action_hash, request_fingerprint
from decisions.services.link_views import (
    LINK_VIEW_WINDOW_SECONDS,
    LINK_VIEWS_UNRECORDED_SECONDS,
    approval_link_viewed,
)
from decisions.services.tick import decision_expire, decision_tick, expire, fire_due, next_due
from decisions.specs import DecisionSpec

__all__ = [
    "LINK_VIEWS_UNRECORDED_SECONDS",
    "LINK_VIEW_WINDOW_SECONDS",
    "MAX_NOTE_LENGTH",
    "MAX_TEXT_LENGTH",
    "AlreadyAnswered",
    "AlreadyResolved",
    "DeadlinePassed",
    "DecisionSpec",
    "IdempotencyConflict",
    "Route",
    "SeparationOfDuties",
    "VerificationRequired",
    "action_hash",
    "approval_link_viewed",
    "ask",
    "asked_entries",
    "decision_answer",
    "decision_cancel",
    "decision_create",
    "decision_expire",
    "decision_route",
    "decision_route_recipients",
    "decision_tick",
    "expire",
    "fire_due",
    "next_due",
    "request_fingerprint",
]
