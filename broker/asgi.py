import os

from django.core.asgi import get_asgi_application

from broker.asgi_body import BoundedBody

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")

# Request bodies are read, chunked or not and at most 1 MiB, before Django sees the request.
application = BoundedBody(get_asgi_application())
