"""The image must carry every folder the app imports: an app added to INSTALLED_APPS but not
copied into the image starts fine here and fails only in production."""

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def test_the_image_copies_every_local_app_and_the_templates():
    copied = set(re.findall(r"^COPY (\S+) \1$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE))
    local_apps = {app.split(".")[0] for app in settings.INSTALLED_APPS if (ROOT / app.split(".")[0]).is_dir()}

    assert local_apps, "no local apps found: the test would check nothing"
    assert {"portal", "channels"} <= local_apps
    assert local_apps | {"broker", "templates"} <= copied  # the project package and shared templates
