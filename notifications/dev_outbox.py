"""The dev outbox: with DEBUG on, every email is also kept under var/dev-outbox/ and shown at
/dev/outbox/, rendered, with working links, so anyone can play the approver without a mail
server. Files, not a table: it is a development aid with nothing to migrate."""

import json
import uuid
from pathlib import Path

from django.conf import settings
from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone

OUTBOX_DIR = settings.VAR_DIR / "dev-outbox"
KEEP = 200


class DevOutboxBackend(BaseEmailBackend):
    """Sends through DEV_OUTBOX_BACKEND (the configured backend) and keeps a copy."""

    def __init__(self, fail_silently: bool = False, **kwargs) -> None:
        super().__init__(fail_silently=fail_silently)
        self.inner = get_connection(settings.DEV_OUTBOX_BACKEND, fail_silently=fail_silently, **kwargs)

    def send_messages(self, email_messages) -> int:
        sent = self.inner.send_messages(email_messages)
        OUTBOX_DIR.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            html = next(
                (body for body, mime in getattr(message, "alternatives", []) if mime == "text/html"), ""
            )
            record = {
                "subject": message.subject,
                "to": message.to,
                "from": message.from_email,
                "at": timezone.now().isoformat(),
                "text": message.body,
                "html": html,
            }
            name = f"{timezone.now():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.json"
            (OUTBOX_DIR / name).write_text(json.dumps(record))
        for old in sorted(OUTBOX_DIR.glob("*.json"))[:-KEEP]:
            old.unlink(missing_ok=True)
        return sent


def _messages() -> list[tuple[str, dict]]:
    files = sorted(OUTBOX_DIR.glob("*.json"), reverse=True) if OUTBOX_DIR.exists() else []
    return [(path.stem, json.loads(path.read_text())) for path in files]


def _require_debug() -> None:
    if not settings.DEBUG:
        raise Http404


def outbox_list(request):
    _require_debug()
    return render(request, "notifications/dev_outbox.html", {"messages": _messages()})


def outbox_message(request, name: str):
    _require_debug()
    path = OUTBOX_DIR / f"{name}.json"
    if Path(name).name != name or not path.exists():
        raise Http404
    record = json.loads(path.read_text())
    if record["html"]:
        return HttpResponse(record["html"])
    return HttpResponse(record["text"], content_type="text/plain; charset=utf-8")
