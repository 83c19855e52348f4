from celery import shared_task

from decisions.services.tick import fire_due


@shared_task(name="decisions.clock_tick")
def clock_tick() -> int:
    return fire_due()
