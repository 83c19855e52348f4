from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from decisions.addresses import parse_address
from decisions.ids import new_decision_id
from decisions.outcomes import Outcome


class Status(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    RESPONDED = "responded"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Urgency(models.TextChoices):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


class OnTimeout(models.TextChoices):
    EXPIRE = "expire"
    DENY = "deny"
    APPROVE = "approve"


class ResponseType(models.TextChoices):
    CHOICE = "choice"
    TEXT = "text"


class Via(models.TextChoices):
    EMAIL = "email"
    SLACK = "slack"
    WEB = "web"
    API = "api"
    TIMEOUT = "timeout"
    POLICY = "policy"


class Verification(models.TextChoices):
    """How sure we must be that the approver is who answers, weakest first. `link`: whoever holds
    their email link or Slack button. `session`: signed in to the portal by a magic link within
    PORTAL_FRESH_SIGN_IN_MINUTES. `passkey`: in the portal, with a passkey that verified the
    user (PIN, fingerprint, face) at the moment of answering."""

    LINK = "link"
    SESSION = "session"
    PASSKEY = "passkey"

    @classmethod
    def satisfies(cls, verified: str, required: str) -> bool:
        order = [cls.LINK, cls.SESSION, cls.PASSKEY]
        return order.index(verified) >= order.index(required)


class Channel(models.TextChoices):
    EMAIL = "email"
    SLACK = "slack"


def default_options() -> list[str]:
    return ["approve", "deny"]


class StoredJSONField(models.JSONField):
    """A JSONField whose INSERT hands back the value as the database stored it (RETURNING):
    PostgreSQL's jsonb reorders keys and rewrites some numbers, and the create response must
    read byte for byte as every later GET does without reading the row back."""

    db_returning = True


class Decision(models.Model):
    """One action put to people for sign-off. Its status moves once, from pending to a final
    state, and only through the compare-and-set updates in decisions/services/."""

    id = models.CharField(primary_key=True, max_length=40, default=new_decision_id, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.PROTECT, related_name="decisions"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    action = models.CharField(max_length=500)
    context = models.TextField(blank=True)
    details = StoredJSONField(default=dict, blank=True)
    options = models.JSONField(default=default_options)
    response_type = models.CharField(max_length=8, choices=ResponseType.choices, default=ResponseType.CHOICE)
    allow_edit = models.BooleanField(default=False)
    urgency = models.CharField(max_length=8, choices=Urgency.choices, default=Urgency.NORMAL)
    # The routing as asked: [{"approvers": [...], "quorum": "any" | "all" | n}, ...]. A plain
    # `approvers` request is one stage.
    stages = models.JSONField(default=list)
    escalation = models.JSONField(default=list, blank=True)
    escalation_repeat = models.PositiveSmallIntegerField(default=0)
    reminders = models.JSONField(default=list, blank=True, help_text="minutes after creation")
    current_stage = models.PositiveSmallIntegerField(default=0)
    # The clock: timed steps (decisions/schedule.py), how many have fired, and when it next
    # has something to do (the next step or the deadline, whichever is first).
    schedule = models.JSONField(default=list, blank=True)
    schedule_position = models.PositiveSmallIntegerField(default=0)
    next_due_at = models.DateTimeField(null=True, blank=True)
    policy = models.JSONField(null=True, blank=True, help_text="the policy rule that matched: name, action")
    on_timeout = models.CharField(max_length=8, choices=OnTimeout.choices, default=OnTimeout.EXPIRE)
    # A database default too: rows inserted without it (raw SQL, older code mid-deploy) stay valid.
    verification = models.CharField(
        max_length=8, choices=Verification.choices, default=Verification.LINK, db_default=Verification.LINK
    )
    # Separation of duties: who asked (never approves it), and whether one person may approve
    # two stages. Database defaults too, as for verification.
    requested_by = models.CharField(max_length=320, blank=True, default="", db_default="")
    distinct_stage_approvers = models.BooleanField(default=True, db_default=True)
    callback_url = models.CharField(max_length=2000, blank=True)
    metadata = StoredJSONField(default=dict, blank=True)
    action_hash = models.CharField(max_length=64)
    # NULL, not "": the unique constraint must ignore decisions created without a key.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)
    outcome = StoredJSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    # The OpenTelemetry context the decision was created in (W3C `traceparent`/`tracestate`),
    # so later work joins its trace (broker/tracing.py); {} while tracing is off.
    trace_context = models.JSONField(default=dict, db_default={}, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="decision_unique_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="decision_org_newest"),
            # The clock's only query: its cost follows how many are due, not how many wait.
            models.Index(
                fields=["next_due_at"], condition=models.Q(status="pending"), name="decision_pending_due"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.action[:60]} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == Status.PENDING

    @property
    def resolution(self) -> Outcome | None:
        """How it was resolved (`outcome`, typed); None while it is pending."""
        return Outcome.from_json(self.outcome) if self.outcome else None


class ApprovalRequest(models.Model):
    """The decision put to one approver over one channel, at one stage and escalation level."""

    class State(models.TextChoices):
        PENDING = "pending"  # asked, no answer yet
        ANSWERED = "answered"
        CLOSED = "closed"  # the decision resolved without this approver's answer

    decision = models.ForeignKey(Decision, on_delete=models.CASCADE, related_name="requests")
    address = models.CharField(max_length=320, help_text="email address or slack:U…")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    group = models.CharField(max_length=64, blank=True, help_text="the group it was asked through")
    on_behalf_of = models.CharField(
        max_length=320,
        blank=True,
        default="",
        db_default="",
        help_text="the away approver this delegate stands in for",
    )
    stage = models.PositiveSmallIntegerField(default=0)
    level = models.PositiveSmallIntegerField(default=0, help_text="escalation level; 0 = first asked")
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_via = models.CharField(max_length=8, choices=Via.choices, blank=True)
    answered_by = models.CharField(max_length=320, blank=True, help_text="who clicked, when not the address")
    choice = models.CharField(max_length=64, blank=True)
    text = models.TextField(blank=True)
    note = models.TextField(blank=True)
    edited_details = models.JSONField(null=True, blank=True)
    # Where the channel's message for this request was posted (channels.base.MessageRef), and to
    # whom: a Slack channel and ts, a Teams conversation and activity. Teams' ids run to some 150
    # characters (a 1:1 conversation is "a:1" and 130 more).
    slack_channel = models.CharField(max_length=255, blank=True)
    slack_ts = models.CharField(max_length=100, blank=True)
    slack_user = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["decision", "address", "channel", "stage"], name="request_unique_per_stage"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.address} via {self.channel} for {self.decision_id}"


class ApproverGroup(models.Model):
    """Named approvers: `group:<name>` asks every member."""

    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="approver_groups"
    )
    name = models.SlugField(max_length=64)
    members = models.JSONField(
        default=list, help_text='addresses, e.g. ["alice@example.com", "slack:U123ABC"]'
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="group_unique_name"),
        ]

    def __str__(self) -> str:
        return f"group:{self.name}"

    def clean(self) -> None:
        if not isinstance(self.members, list) or not self.members:
            raise ValidationError({"members": "List at least one approver address."})
        for member in self.members:
            try:
                kind, _ = parse_address(member) if isinstance(member, str) else ("", "")
            except ValueError as exc:
                raise ValidationError({"members": str(exc)}) from None
            if kind in ("", "group"):
                raise ValidationError(
                    {"members": f"{member!r}: members are approver addresses (groups do not nest)."}
                )


class Policy(models.Model):
    """One rule of an organization's policy. Enabled rules are tried in `position` order and
    the first whose conditions all hold wins: it approves or denies at once, or routes the
    decision (approvers, quorum, stages, timeout, urgency, escalation). What the agent sent
    explicitly is kept unless the rule overrides it."""

    class Action(models.TextChoices):
        APPROVE = "approve", "approve automatically"
        DENY = "deny", "deny automatically"
        ROUTE = "route", "route to approvers"

    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="policies"
    )
    name = models.SlugField(max_length=64)
    position = models.PositiveIntegerField(default=0, help_text="rules are tried from the lowest")
    enabled = models.BooleanField(default=True)
    conditions = models.JSONField(
        default=list,
        blank=True,
        help_text='all must hold, e.g. [{"field": "details.amount", "op": "lt", "value": 50}]; none: always',
    )
    action = models.CharField(max_length=8, choices=Action.choices)
    approvers = models.JSONField(default=list, blank=True)
    quorum = models.JSONField(null=True, blank=True, help_text='"any", "all" or a number')
    stages = models.JSONField(default=list, blank=True)
    timeout_minutes = models.FloatField(null=True, blank=True)
    urgency = models.CharField(max_length=8, choices=Urgency.choices, blank=True)
    escalation = models.JSONField(default=list, blank=True)
    verification = models.CharField(
        max_length=8,
        choices=Verification.choices,
        blank=True,
        default="",
        db_default="",
        help_text="blank: what the agent asked",
    )
    override = models.BooleanField(
        default=False, help_text="replace what the agent sent, not only fill in what it left out"
    )

    class Meta:
        ordering = ["organization", "position", "pk"]
        verbose_name_plural = "policies"
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="policy_unique_name"),
        ]

    def __str__(self) -> str:
        return f"policy:{self.name}"

    def clean(self) -> None:
        from decisions.policy_validation import policy_errors

        if errors := policy_errors(self):
            raise ValidationError(errors)
