"""Thin tasks: they take ids, never objects, and call a service."""

from celery import shared_task

from notifications.services import deliveries_requeue_due, delivery_attempt


@shared_task(name="notifications.deliver")
def deliver(delivery_id: int) -> None:
    delivery_attempt(delivery_id=delivery_id)


@shared_task(name="notifications.sweep_outbox")
def sweep_outbox() -> int:
    return deliveries_requeue_due()
