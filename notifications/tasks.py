"""Thin tasks: they take ids, never objects, and call a service."""

from celery import shared_task

from notifications.services import deliveries_requeue_due, delivery_attempt


@shared_task(name="notifications.deliver")
def deliver(*delivery_ids: int) -> None:
    # One message carries all of a transaction's deliveries (cheap for the web process that
    # published it). The others go back on the queue one message each, before this attempt,
    # so that workers send them in parallel and one slow receiver holds up none of them.
    first, *others = delivery_ids
    for delivery_id in others:
        deliver.delay(delivery_id)
    delivery_attempt(delivery_id=first)


@shared_task(name="notifications.sweep_outbox")
def sweep_outbox() -> int:
    return deliveries_requeue_due()
