"""The project's URLs with django-anymail's tracking webhooks mounted, as broker.urls does when
ANYMAIL_WEBHOOK_SECRET is set. broker.urls decides that once, at import, from the environment;
tests that post webhooks use this urlconf (@pytest.mark.urls) instead of reloading it."""

from django.urls import include, path

from broker.urls import handler400, handler403, handler404, handler500
from broker.urls import urlpatterns as _project

urlpatterns = [*_project, path("anymail/", include("anymail.urls"))]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
