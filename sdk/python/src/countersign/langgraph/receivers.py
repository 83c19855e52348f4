"""The callback receivers, now shared by every integration: see countersign.receivers."""

from countersign.receivers import MAX_BODY_BYTES, CallbackResult, asgi_app, django_view, wsgi_app

__all__ = ["MAX_BODY_BYTES", "CallbackResult", "asgi_app", "django_view", "wsgi_app"]
