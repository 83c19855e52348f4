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
