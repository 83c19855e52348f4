from django.db import models
from django.utils import timezone


class Delivery(models.Model):
    """The outbox: one message to send (an email, a Slack post, a callback).

    Created in the same transaction as the change that needs it, so a message exists if and
    only if the change committed. A Celery task sends it; the outbox sweep re-enqueues any row
    whose task was lost, and a lease frees rows whose worker died mid-send.
    """

    class Kind(models.TextChoices):
        EMAIL = "email"
        SLACK = "slack"
        CALLBACK = "callback"

    class Purpose(models.TextChoices):
        ASK = "ask", "ask an approver"
        REMIND = "remind", "remind an approver"
        UPDATE = "update", "update a message to show the outcome"
        OUTCOME = "outcome", "report the outcome"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        SKIPPED = "skipped"  # no longer needed: an ask for a decision already resolved

    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="deliveries"
    )
    decision = models.ForeignKey("decisions.Decision", on_delete=models.CASCADE, related_name="deliveries")
    request = models.ForeignKey(
        "decisions.ApprovalRequest",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    purpose = models.CharField(max_length=8, choices=Purpose.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    enqueued_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    provider_message_id = models.CharField(
        max_length=255, blank=True, db_index=True, help_text="the email provider's id, for tracking webhooks"
    )

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=models.Q(status="pending"), name="delivery_pending_due"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.purpose} for {self.decision_id} ({self.status})"


class DeliveryAttempt(models.Model):
    """One try at sending a delivery: what happened, how long it took, what came back."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    ok = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    response_snippet = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"


class SlackSettings(models.Model):
    """An organization's Slack app. The token and signing secret are not stored here: these
    fields name the environment variables that hold them (empty: SLACK_BOT_TOKEN and
    SLACK_SIGNING_SECRET), so a database dump never carries a credential."""

    organization = models.OneToOneField(
        "organizations.Organization", on_delete=models.CASCADE, related_name="slack_settings"
    )
    bot_token_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="name of the environment variable holding the bot token (xoxb-…)",
    )
    signing_secret_env = models.CharField(
        max_length=100, blank=True, help_text="name of the environment variable holding the signing secret"
    )
    dm_email_approvers = models.BooleanField(
        default=False, help_text="also DM approvers named by email, found with users.lookupByEmail"
    )

    class Meta:
        verbose_name = "Slack settings"
        verbose_name_plural = "Slack settings"

    def __str__(self) -> str:
        return f"Slack for {self.organization}"

    def clean(self) -> None:
        import re

        from django.core.exceptions import ValidationError

        for field in ("bot_token_env", "signing_secret_env"):
            value = getattr(self, field)
            if value and not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,99}", value):
                raise ValidationError({field: "An environment variable name, e.g. ACME_SLACK_BOT_TOKEN."})
