"""The audit trail: events, the chain the sealer links them into, and signed checkpoints.

Writers only append AuditEvent rows, each with its own content hash and no lock shared with
other writers. One sealer at a time (audit/sealing.py) gives committed events their place in
their organization's chain (AuditLink) and signs a checkpoint of the chain's new head
(AuditCheckpoint), which also leaves the database (audit/checkpoints.py). Every table here is
append-only: the database refuses UPDATE, DELETE and TRUNCATE (audit/guard.py), and the
service's runtime role may only INSERT and SELECT (broker/db_roles.py).
"""

from django.db import models


class CurrentTransactionId(models.Func):
    """The inserting transaction's id, as a bigint (PostgreSQL's xid8 is 64 bits and never
    wraps). The sealer compares it with the oldest transaction still running to know which
    events can no longer be joined by an earlier one (see audit/sealing.py). SQLite has one
    writer at a time, so its ids already commit in order and the column stays empty."""

    output_field = models.BigIntegerField()

    def as_sql(self, compiler, connection, **extra_context):  # type: ignore[override]  # no function to name
        return "NULL", []

    def as_postgresql(self, compiler, connection, **extra_context):
        return "(pg_current_xact_id()::text::bigint)", []


class AuditEvent(models.Model):
    """One immutable event, as its writer recorded it.

    `payload` is canonical JSON text, not a JSON column: the hash covers these exact
    characters, which jsonb would reorder and renormalise. `content_hash` covers everything
    the writer knew (audit/chain.py); the event's place in the chain is its AuditLink.
    """

    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.PROTECT, related_name="audit_events"
    )
    created_at = models.DateTimeField()
    decision = models.ForeignKey(
        "decisions.Decision", null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    event = models.CharField(max_length=64)
    actor = models.CharField(max_length=320)
    channel = models.CharField(max_length=16, blank=True)
    payload = models.TextField(default="{}")
    content_hash = models.CharField(max_length=64)
    txid = models.BigIntegerField(null=True, blank=True, db_default=CurrentTransactionId(), editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "created_at"], name="audit_event_org_time"),
            models.Index(fields=["txid"], name="audit_event_txid"),
        ]
        permissions = [("export_auditevent", "Can export the audit trail")]

    def __str__(self) -> str:
        return f"{self.event} by {self.actor}"


class AuditLink(models.Model):
    """An event's place in its organization's hash chain, written by the sealer:
    hash = H(prev_hash, seq, content_hash) (audit/chain.py)."""

    event = models.OneToOneField(AuditEvent, on_delete=models.PROTECT, primary_key=True, related_name="link")
    organization = models.ForeignKey("organizations.Organization", on_delete=models.PROTECT, related_name="+")
    seq = models.PositiveBigIntegerField(help_text="Position in the organization's chain, from 1.")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "seq"], name="audit_link_unique_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} of organization {self.organization_id}"


class AuditSeal(models.Model):
    """One run of the sealer that linked events: how far it got. `horizon` is PostgreSQL's
    oldest running transaction id when it started (events of earlier transactions were all
    linked), or on SQLite the last event id it linked."""

    sealed_at = models.DateTimeField()
    horizon = models.BigIntegerField()
    events = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"seal of {self.events} events at {self.sealed_at:%Y-%m-%d %H:%M:%S}"


class AuditCheckpoint(models.Model):
    """A signed statement of an organization's chain: its size and head hash at a time.

    `body` is the exact text that was signed (canonical JSON, audit/checkpoints.py) and
    `signature` its Ed25519 signature, base64. Copies leave the database (a directory or
    bucket, a compliance webhook), so a rewrite of the tables disagrees with them."""

    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.PROTECT, related_name="audit_checkpoints"
    )
    size = models.PositiveBigIntegerField()
    head_hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField()
    key_id = models.CharField(max_length=32)
    body = models.TextField()
    signature = models.CharField(max_length=128)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "size"], name="audit_checkpoint_unique_size"),
        ]

    def __str__(self) -> str:
        return f"organization {self.organization_id} at #{self.size}"


class CheckpointPublication(models.Model):
    """How far each sink has received an organization's checkpoints. Bookkeeping, not
    evidence (the only audit table the service updates): losing it re-sends a checkpoint."""

    sink = models.CharField(max_length=16)
    organization = models.ForeignKey("organizations.Organization", on_delete=models.CASCADE, related_name="+")
    size = models.PositiveBigIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sink", "organization"], name="checkpoint_publication_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.sink} has organization {self.organization_id} to #{self.size}"
