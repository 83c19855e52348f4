"""For comparison in bench/web_cpu.py: every request through Django's ASGI handler, as
broker/asgi.py served them before the JSON API and the pages moved to Django's WSGI handler
(issue 14). Static files aside (not requested by the benchmark), this is that path."""

import os

from django.core.asgi import get_asgi_application

from broker.asgi_body import BoundedBody

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")

application = BoundedBody(get_asgi_application())
