from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone


def default_reminder_points() -> list[float]:
    return [0.5, 0.9]


class Organization(models.Model):
    """A tenant: its API keys, decisions, groups and audit trail are seen by nobody else."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    default_timeout_minutes = models.FloatField(
        default=60,
        validators=[MinValueValidator(0.1), MaxValueValidator(365 * 24 * 60)],
        help_text="Used when an agent does not send timeout_minutes.",
    )
    reminder_points = models.JSONField(
        default=default_reminder_points,
        blank=True,
        help_text="when unanswered approvers are reminded, as fractions of the wait: [0.5, 0.9]",
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Raised by database triggers on every write to its policy rules or Slack settings, and
    # never lowered (organizations/migrations/0004): what per-process copies of those are
    # checked against (decisions/selectors.create_settings).
    settings_version = models.BigIntegerField(default=0, db_default=0, editable=False)

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        points = self.reminder_points
        if not isinstance(points, list) or not all(
            isinstance(p, int | float) and not isinstance(p, bool) and 0 < p < 1 for p in points
        ):
            raise ValidationError(
                {"reminder_points": "A list of fractions between 0 and 1, e.g. [0.5, 0.9]."}
            )


class Scope(models.TextChoices):
    DECISIONS = "decisions"
    AUDIT = "audit"


class ApiKey(models.Model):
    """An agent's credential. Only the SHA-256 of the key is stored; the key is shown once."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, help_text="The key's first characters, to tell keys apart.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    # DRF uses the key as the request's principal (request.user and request.auth).
    is_authenticated = True

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.organization.slug})"

    @property
    def actor(self) -> str:
        """How this key appears in the audit trail and in outcomes."""
        return f"api_key:{self.prefix}"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class WebhookSecret(models.Model):
    """The key that signs an organization's callbacks (Standard Webhooks, `whsec_…`).

    Kept in the clear because signing needs it. Rotation retires the current secret: a
    retired secret still signs for ROTATION_OVERLAP, so receivers can switch without a gap.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_secrets")
    secret = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.secret[:10]}… ({self.organization.slug})"
