"""Checkpoints: signed statements of each organization's chain that leave the database.

A checkpoint says "organization N's chain had SIZE events and its last hash was HEAD at TIME",
as canonical JSON (`body`) signed with the service's Ed25519 key (audit/signing.py). Each is
copied to the sinks the operator configured:

- storage: one file per checkpoint, `<organization id>/<size, 12 digits>.json`, in a directory
  (AUDIT_CHECKPOINT_DIR) or any Django storage backend (AUDIT_CHECKPOINT_STORAGE, e.g.
  django-storages' S3 backend for an S3-compatible bucket);
- webhook: the newest checkpoint of each organization POSTed to a compliance endpoint
  (AUDIT_CHECKPOINT_WEBHOOK_URL), signed per Standard Webhooks with
  AUDIT_CHECKPOINT_WEBHOOK_SECRET.

A chain rewritten in the database, even with every hash recomputed, then disagrees with a copy
it cannot reach: `verify_audit --checkpoints` compares them. Since each head hash covers the
whole chain before it, a sink that missed some checkpoints loses nothing but precision.
"""

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from audit import signing
from audit.models import AuditCheckpoint, CheckpointPublication
from broker.canonical import canonical_json
from organizations.models import Organization

logger = logging.getLogger(__name__)

ORIGIN = "countersign/audit/v1"
STORAGE_SINK, WEBHOOK_SINK = "storage", "webhook"
WEBHOOK_TIMEOUT = httpx.Timeout(15.0)
MAX_FILES_PER_RUN = 1000
MAX_BACKOFF_SECONDS = 300


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def checkpoint_fields(*, organization_id: int, size: int, head_hash: str, at: datetime) -> dict:
    """Everything an AuditCheckpoint row holds, signed. (The migration that converted the
    first chains builds its rows from this too.)"""
    key_id = signing.key_id()
    body = canonical_json(
        {
            "origin": ORIGIN,
            "organization_id": organization_id,
            "size": size,
            "head_hash": head_hash,
            "sealed_at": _iso(at),
            "key_id": key_id,
        }
    )
    return {
        "organization_id": organization_id,
        "size": size,
        "head_hash": head_hash,
        "sealed_at": at,
        "key_id": key_id,
        "body": body,
        "signature": signing.sign(body),
    }


def checkpoint_build(*, organization_id: int, size: int, head_hash: str, at: datetime) -> AuditCheckpoint:
    """A signed checkpoint (not yet saved)."""
    return AuditCheckpoint(
        **checkpoint_fields(organization_id=organization_id, size=size, head_hash=head_hash, at=at)
    )


def checkpoint_document(checkpoint: AuditCheckpoint) -> dict:
    """What sinks receive and the API shows. Only `body` is signed: readers trust its fields,
    the others repeat them for people."""
    return {
        "organization_id": checkpoint.organization_id,
        "size": checkpoint.size,
        "head_hash": checkpoint.head_hash,
        "sealed_at": _iso(checkpoint.sealed_at),
        "key_id": checkpoint.key_id,
        "algorithm": signing.ALGORITHM,
        "body": checkpoint.body,
        "signature": checkpoint.signature,
    }


# --- reading checkpoints back (verify_audit --checkpoints) --------------------------------------


@dataclass(frozen=True)
class VerifiedCheckpoint:
    organization_id: int
    size: int
    head_hash: str
    sealed_at: str
    source: str


def verified_checkpoint(document: dict, *, public_keys: Iterable[str], source: str) -> VerifiedCheckpoint:
    """The facts of a checkpoint document whose signature one of `public_keys` accepts.
    Raises ValueError for anything else: a forged or altered checkpoint proves nothing."""
    if not isinstance(document, dict):
        raise ValueError("not a checkpoint")
    body, signature = document.get("body"), document.get("signature")
    if not isinstance(body, str) or not isinstance(signature, str):
        raise ValueError("not a checkpoint: no body and signature")
    if not any(
        signing.signature_valid(body=body, signature=signature, public_key=key) for key in public_keys
    ):
        raise ValueError("its signature does not verify with the audit public key")
    facts = json.loads(body)
    if facts.get("origin") != ORIGIN:
        raise ValueError(f"not a Countersign audit checkpoint (origin {facts.get('origin')!r})")
    return VerifiedCheckpoint(
        organization_id=int(facts["organization_id"]),
        size=int(facts["size"]),
        head_hash=str(facts["head_hash"]),
        sealed_at=str(facts["sealed_at"]),
        source=source,
    )


def _documents_in(value) -> list[dict]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and isinstance(value.get("results"), list):
        return value["results"]
    return [value]


def load_checkpoint_documents(source: str, *, api_key: str = "") -> list[tuple[str, dict]]:
    """(where, document) for every checkpoint in a directory tree of .json files, or at a URL
    (GET /audit/checkpoints, followed through its pages, or any URL serving such JSON)."""
    if source.startswith(("http://", "https://")):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        found: list[tuple[str, dict]] = []
        url: str | None = source
        with httpx.Client(timeout=30.0, headers=headers) as client:
            while url:
                response = client.get(url)
                response.raise_for_status()
                page = response.json()
                found += [(url, document) for document in _documents_in(page)]
                url = page.get("next") if isinstance(page, dict) else None
        return found
    folder = Path(source)
    if not folder.is_dir():
        raise ValueError(f"{source} is neither a directory nor an http(s) URL")
    found = []
    for path in sorted(folder.rglob("*.json")):
        found += [(str(path), document) for document in _documents_in(json.loads(path.read_text()))]
    return found


# --- sinks -------------------------------------------------------------------------------------


def _storage():
    return storages["audit_checkpoints"]


def configured_sinks() -> list[str]:
    sinks = []
    if settings.AUDIT_CHECKPOINT_STORAGE_ENABLED:
        sinks.append(STORAGE_SINK)
    if settings.AUDIT_CHECKPOINT_WEBHOOK_URL:
        sinks.append(WEBHOOK_SINK)
    return sinks


def storage_name(checkpoint: AuditCheckpoint) -> str:
    return f"{checkpoint.organization_id}/{checkpoint.size:012d}.json"


def _to_storage(checkpoints: list[AuditCheckpoint]) -> None:
    storage = _storage()
    for checkpoint in checkpoints:
        name = storage_name(checkpoint)
        if not storage.exists(name):  # a retry after a crash finds it written
            content = json.dumps(checkpoint_document(checkpoint), indent=2) + "\n"
            storage.save(name, ContentFile(content.encode()))


def _to_webhook(checkpoints: list[AuditCheckpoint]) -> None:
    newest = checkpoints[-1]  # its head hash covers all the others
    body = json.dumps(
        {
            "type": "audit.checkpoint",
            "timestamp": _iso(newest.sealed_at),
            "data": checkpoint_document(newest),
        },
        separators=(",", ":"),
    )
    msg_id, now = f"ckpt_{newest.organization_id}_{newest.size}", datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(settings.AUDIT_CHECKPOINT_WEBHOOK_SECRET).sign(msg_id, now, body),
    }
    response = httpx.post(
        settings.AUDIT_CHECKPOINT_WEBHOOK_URL, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT
    )
    if not response.is_success:
        raise RuntimeError(f"the compliance endpoint answered {response.status_code}")


_SENDERS = {STORAGE_SINK: _to_storage, WEBHOOK_SINK: _to_webhook}


def _publish_one(sink: str, organization_id: int, newest_size: int) -> None:
    publication, _ = CheckpointPublication.objects.get_or_create(sink=sink, organization_id=organization_id)
    if publication.size >= newest_size:
        return
    if publication.next_attempt_at and publication.next_attempt_at > timezone.now():
        return
    checkpoints = list(
        AuditCheckpoint.objects.filter(organization_id=organization_id, size__gt=publication.size).order_by(
            "size"
        )[:MAX_FILES_PER_RUN]
    )
    try:
        _SENDERS[sink](checkpoints)
    except Exception as exc:  # any failure of the outside world: retry later, with backoff
        failures = publication.failures + 1
        delay = min(2**failures, MAX_BACKOFF_SECONDS)
        CheckpointPublication.objects.filter(pk=publication.pk).update(
            failures=failures,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
            last_error=str(exc)[:500],
        )
        logger.warning("audit checkpoints for organization %s not sent to %s: %s", organization_id, sink, exc)
        return
    CheckpointPublication.objects.filter(pk=publication.pk).update(
        size=checkpoints[-1].size, failures=0, next_attempt_at=None, last_error=""
    )


def checkpoints_publish(*, organization_ids: Iterable[int] | None = None) -> None:
    """Send every sink what it has not received yet, for the organizations given (after a
    seal: those it signed for) or all (beat's sweep, so a sink that was down catches up). A
    crash between sending and recording only sends again."""
    sinks = configured_sinks()
    if not sinks:
        return
    if organization_ids is None:
        organization_ids = Organization.objects.values_list("pk", flat=True)
    for organization_id in organization_ids:
        # The newest size through the (organization, size) unique index, not a scan.
        newest = AuditCheckpoint.objects.filter(organization_id=organization_id).aggregate(size=Max("size"))
        if newest["size"] is None:
            continue
        for sink in sinks:
            _publish_one(sink, organization_id, newest["size"])


def publish_on_commit(organization_ids: list[int]) -> None:
    if not configured_sinks():
        return

    def enqueue():
        from audit.tasks import publish_checkpoints

        publish_checkpoints.delay(organization_ids)

    # robust: a broker outage must not fail the seal; beat's sweep publishes later.
    transaction.on_commit(enqueue, robust=True)
