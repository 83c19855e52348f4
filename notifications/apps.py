from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # Senders register themselves for their delivery kind on import.
        from notifications import callbacks, email, slack, tracking  # noqa: F401
