from django.db import models
from django.utils import timezone


class Approver(models.Model):
    """A person who has signed in to the portal, by the email address they are asked at.
    Approvers have no password: a magic link signs them in. Raising session_epoch signs out
    every session they have (each session carries the epoch it was opened under)."""

    address = models.CharField(max_length=320, unique=True, help_text="lower case")
    session_epoch = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    last_signed_in_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.address


class SignInLink(models.Model):
    """One emailed sign-in link. Only the SHA-256 of its token is stored; it works once, for
    PORTAL_SIGN_IN_LINK_MINUTES."""

    address = models.CharField(max_length=320, help_text="lower case")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    next_path = models.CharField(
        max_length=200, blank=True, help_text="the portal page to open after signing in"
    )

    class Meta:
        indexes = [models.Index(fields=["address", "-created_at"], name="signin_link_address_newest")]

    def __str__(self) -> str:
        return f"sign-in link for {self.address}"


class Passkey(models.Model):
    """A WebAuthn credential an approver registered in the portal. Decisions whose verification
    is `passkey` are answered only with one, the authenticator having verified the user."""

    approver = models.ForeignKey(Approver, on_delete=models.CASCADE, related_name="passkeys")
    name = models.CharField(max_length=100)
    credential_id = models.CharField(max_length=1400, unique=True, help_text="base64url")
    public_key = models.BinaryField()
    sign_count = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.approver.address})"


class Delegation(models.Model):
    """'Away until …, delegate to …': while it lasts, new asks for `address` go to `delegate`
    instead (the request records on whose behalf). Set by the approver in the portal or by an
    admin; one per approver."""

    address = models.CharField(max_length=320, unique=True, help_text="the approver who is away (lower case)")
    delegate = models.CharField(max_length=320, help_text="who is asked instead (lower case)")
    until = models.DateTimeField()
    set_by = models.CharField(max_length=320, help_text="the approver, or admin:<username>")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.address} → {self.delegate} until {self.until:%Y-%m-%d %H:%M}"


class OrganizationPortalSettings(models.Model):
    """Per organization: whether its asks follow approvers' delegations."""

    organization = models.OneToOneField(
        "organizations.Organization", on_delete=models.CASCADE, related_name="portal_settings"
    )
    allow_delegation = models.BooleanField(
        default=True, help_text="off: asks always go to the approver named, even while they are away"
    )

    class Meta:
        verbose_name_plural = "organization portal settings"

    def __str__(self) -> str:
        return f"portal settings of {self.organization}"
