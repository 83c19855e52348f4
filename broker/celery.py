import os

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")

app = Celery("countersign")
app.config_from_object("broker.celery_config:CELERY", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _start_tracing(**kwargs) -> None:
    # A worker's pool processes fork after this; the SDK restarts its export thread in each.
    from broker import tracing

    tracing.start_from_environment()
