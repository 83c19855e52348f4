from django.db import models


class AuditEvent(models.Model):
    """One immutable row of an organization's hash chain.

    The database rejects UPDATE, DELETE and TRUNCATE on this table (see audit/guard.py).
    `payload` is canonical JSON text, not a JSON column: the hash covers these exact
    characters, which jsonb would reorder and renormalise.
    """

    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.PROTECT, related_name="audit_events"
    )
    seq = models.PositiveBigIntegerField(help_text="Position in the organization's chain, from 1.")
    created_at = models.DateTimeField()
    decision = models.ForeignKey(
        "decisions.Decision", null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    event = models.CharField(max_length=64)
    actor = models.CharField(max_length=320)
    channel = models.CharField(max_length=16, blank=True)
    payload = models.TextField(default="{}")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "seq"], name="audit_event_unique_seq"),
        ]
        indexes = [models.Index(fields=["organization", "created_at"], name="audit_event_org_time")]
        permissions = [("export_auditevent", "Can export the audit trail")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.event} by {self.actor}"


class ChainHead(models.Model):
    """The newest link of an organization's chain. Writers lock this row, so concurrent
    transactions append one after another; verify_audit compares it with the last event to
    detect rows removed from the end."""

    organization = models.OneToOneField(
        "organizations.Organization", on_delete=models.PROTECT, primary_key=True
    )
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"{self.organization_id} at #{self.seq}"
