"""The WSGI app (`manage.py runserver`, a WSGI server). The server Countersign runs is
broker/asgi.py, which serves most requests through this same Django handler; here a long-poll
(GET /decisions/{id}?wait=N) holds a thread while it waits."""

import os

from django.core.wsgi import get_wsgi_application

from broker import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
# Before Django builds its middleware chain: tracing adds a middleware of its own.
tracing.start_from_environment()

from broker.static_files import StaticFilesWSGI  # noqa: E402  (needs Django set up)

application = StaticFilesWSGI(get_wsgi_application())
