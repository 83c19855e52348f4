import os

from django.core.wsgi import get_wsgi_application

from broker import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
# Before Django builds its middleware chain: tracing adds a middleware of its own.
tracing.start_from_environment()

application = get_wsgi_application()
