"""Thin tasks: the sealer and the checkpoint sinks."""

from celery import shared_task

from audit.checkpoints import checkpoints_publish
from audit.sealing import audit_seal


@shared_task(name="audit.seal")
def seal() -> int:
    return audit_seal().events


@shared_task(name="audit.publish_checkpoints")
def publish_checkpoints(organization_ids: list[int] | None = None) -> None:
    checkpoints_publish(organization_ids=organization_ids)
