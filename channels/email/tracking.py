"""Email providers' tracking events (delivered, bounced, complained) arrive through
django-anymail's webhooks at /anymail/<esp>/tracking/ and go into the audit trail."""

from anymail.signals import tracking
from django.dispatch import receiver

from notifications.services import delivery_record_tracking


@receiver(tracking, dispatch_uid="countersign-email-tracking")
def record_email_tracking(sender, event, esp_name, **kwargs) -> None:
    delivery_record_tracking(
        message_id=event.message_id or "",
        event_type=event.event_type or "",
        # Some events carry no id (Postmark's Delivery): type and time identify a duplicate.
        event_id=event.event_id
        or (f"{event.event_type}@{event.timestamp.isoformat()}" if event.timestamp else ""),
        description=event.description or event.reject_reason or "",
        esp=esp_name,
    )
