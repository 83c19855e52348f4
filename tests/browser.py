"""Debian's Chromium for the browser tests, driven by Playwright (never a downloaded browser):
where it is and how it starts. The `browser` fixture (tests/conftest.py) launches it."""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    # Without these Chromium reaches out to Google at start-up and stalls on a machine
    # with no network; the test needs nothing but the live server.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 480, "height": 900}
