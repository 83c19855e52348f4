"""What an agent asks for when it creates a decision, as one typed value.

The API's serializer and the MCP tool build a DecisionSpec from the validated request
(decision_spec_from), tests from tests/factories.py; decision_create takes it. The
serializer has checked the values against the contract; the checks here are about types, so a
caller passing the wrong thing fails at once, not deep in the service.
"""

from dataclasses import dataclass, field, fields

from decisions.models import OnTimeout, ResponseType, Urgency, Verification, default_options

_NUMBER = (int, float)
_TYPES = {
    "action": str,
    "stages": (list, type(None)),
    "quorum": (str, int, type(None)),
    "context": str,
    "details": dict,
    "options": list,
    "response_type": str,
    "allow_edit": bool,
    "urgency": str,
    "timeout_minutes": (*_NUMBER, type(None)),
    "on_timeout": str,
    "verification": str,
    "requested_by": str,
    "distinct_stage_approvers": bool,
    "escalation": list,
    "escalation_repeat": int,
    "reminders": (list, type(None)),
    "callback_url": str,
    "metadata": dict,
    "explicit": frozenset,
}
_CHOICES = {
    "response_type": ResponseType,
    "urgency": Urgency,
    "on_timeout": OnTimeout,
    "verification": Verification,
}
_NOT_BOOLEAN = {"quorum", "timeout_minutes", "escalation_repeat"}  # bool is an int in Python


@dataclass(frozen=True, kw_only=True)
class DecisionSpec:
    action: str
    # [{"approvers": [...], "quorum": "any" | "all" | n}, ...]; None leaves it to a policy rule.
    stages: list[dict] | None = None
    # Only for a policy rule that routes the decision to approvers but has no quorum of its own.
    quorum: str | int | None = None
    context: str = ""
    details: dict = field(default_factory=dict)
    options: list[str] = field(default_factory=default_options)
    response_type: str = ResponseType.CHOICE
    allow_edit: bool = False
    urgency: str = Urgency.NORMAL
    timeout_minutes: float | None = None  # None: the organization's default
    on_timeout: str = OnTimeout.EXPIRE
    # link, session or passkey: how sure we must be of who answers (decisions.models.Verification).
    verification: str = Verification.LINK
    # Separation of duties: who asked for it (never asked, never approves; "" if not said), and
    # whether one person may approve two stages.
    requested_by: str = ""
    distinct_stage_approvers: bool = True
    escalation: list[dict] = field(default_factory=list)  # [{"after_minutes": m, "approvers": [...]}]
    escalation_repeat: int = 0
    reminders: list[float] | None = None  # minutes after the start; None: the organization's
    callback_url: str = ""
    metadata: dict = field(default_factory=dict)
    # The request fields the agent sent: a routing rule fills in only the others unless it overrides.
    explicit: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for each in fields(self):
            value = getattr(self, each.name)
            if not isinstance(value, _TYPES[each.name]) or (
                each.name in _NOT_BOOLEAN and isinstance(value, bool)
            ):
                raise TypeError(f"DecisionSpec.{each.name}: {type(value).__name__} is not {each.type}")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices.values:
                raise ValueError(
                    f"DecisionSpec.{name}: {getattr(self, name)!r} is not one of {choices.values}"
                )
