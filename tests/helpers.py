"""Small helpers shared by tests."""

import time
from collections.abc import Callable

from django.db import close_old_connections


def wait_for(condition: Callable[[], object], *, timeout: float = 15.0, interval: float = 0.05):
    """Poll until condition() is truthy and return its value. The deadline only bounds a
    failing test; a passing one returns as soon as the condition holds."""
    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        if value := condition():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
