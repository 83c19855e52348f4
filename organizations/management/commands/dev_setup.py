import json
import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from decisions.models import ApproverGroup, Policy
from organizations.models import ApiKey
from organizations.services import api_key_create, api_key_hash, organization_get_or_create

# The demo key and admin password, kept across `make dev` starts so what was printed (and
# pasted into scripts) keeps working. Development only: a real deployment has no such file.
CREDENTIALS_FILE = "dev_credentials.json"

# The refund example's rules (sdk/python/examples/refund_agent.py): small refunds go through,
# medium ones ask finance, large ones are urgent and escalate to the team lead.
DEMO_GROUPS = {"finance": ["finance@example.com", "controller@example.com"]}
DEMO_POLICIES: list[dict[str, Any]] = [
    {
        "name": "small-refunds",
        "conditions": [
            {"field": "action", "op": "contains", "value": "refund"},
            {"field": "details.amount", "op": "lt", "value": 50},
        ],
        "action": Policy.Action.APPROVE,
    },
    {
        "name": "medium-refunds",
        "conditions": [
            {"field": "action", "op": "contains", "value": "refund"},
            {"field": "details.amount", "op": "lte", "value": 500},
        ],
        "action": Policy.Action.ROUTE,
        "approvers": ["group:finance"],
        "timeout_minutes": 30,
    },
    {
        "name": "large-refunds",
        "conditions": [
            {"field": "action", "op": "contains", "value": "refund"},
            {"field": "details.amount", "op": "gt", "value": 500},
        ],
        "action": Policy.Action.ROUTE,
        "approvers": ["group:finance"],
        "urgency": "high",
        "escalation": [{"after_minutes": 15, "approvers": ["lead@example.com"]}],
    },
]


def _remembered() -> dict:
    try:
        return json.loads((settings.VAR_DIR / CREDENTIALS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _remember(credentials: dict) -> None:
    path = settings.VAR_DIR / CREDENTIALS_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(credentials, handle)


def _demo_key(organization, remembered: dict) -> str:
    """The remembered key while it still works (not revoked, not deleted), else a new one."""
    raw_key = remembered.get("api_key", "")
    if raw_key and ApiKey.objects.filter(key_hash=api_key_hash(raw_key), revoked_at__isnull=True).exists():
        return raw_key
    return api_key_create(organization=organization, scopes=["decisions", "audit"], name="make dev")[1]


YOURS = "(the one you set)"


def _demo_admin(remembered: dict) -> str:
    """The admin's password as printed before; if they changed it since, theirs stays (and is
    not printed); a new admin, or one whose password was never printed, gets a new one."""
    admin, created = get_user_model().objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True}
    )
    password = remembered.get("admin_password", "")
    if not created and password:
        return password if password == YOURS or admin.check_password(password) else YOURS
    password = secrets.token_urlsafe(9)
    admin.set_password(password)
    admin.save(update_fields=["password"])
    return password


CURL = """curl -s -X POST {base}/decisions \\
  -H 'Authorization: Bearer {key}' \\
  -H 'Content-Type: application/json' \\
  -d '{{"action": "Refund $120 to order #1042", "details": {{"amount": 120, "customer": "Ada"}},
       "approver": "alice@example.com", "timeout_minutes": 30}}'"""


class Command(BaseCommand):
    help = "For `make dev`: a demo organization, a fresh API key, and a curl to try it with."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            # It makes an admin with a printed password: never on a real deployment.
            raise CommandError("dev_setup is for `make dev` only (it needs DEBUG=1).")
        organization, _ = organization_get_or_create(slug="demo", name="Demo Inc")
        for name, members in DEMO_GROUPS.items():
            ApproverGroup.objects.get_or_create(
                organization=organization, name=name, defaults={"members": members}
            )
        for position, rule in enumerate(DEMO_POLICIES, start=1):
            policy = Policy(organization=organization, position=position, **rule)
            if not Policy.objects.filter(organization=organization, name=rule["name"]).exists():
                policy.full_clean()
                policy.save()
        remembered = _remembered()
        raw_key, admin_password = _demo_key(organization, remembered), _demo_admin(remembered)
        _remember({"api_key": raw_key, "admin_password": admin_password})
        base = settings.PUBLIC_BASE_URL
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "=" * 72,
                    f" Countersign is starting at {base}  (API docs: {base}/docs)",
                    f" Demo API key (organization 'demo'): {raw_key}",
                    f" Admin: {base}/admin/  user admin, password {admin_password}",
                    " Demo rules: refunds under $50 are approved by policy, up to $500 go to",
                    " group:finance, above $500 are urgent and escalate (see /admin/decisions/policy/).",
                    " Ask alice for sign-off (named in the request, so the rules' routing to",
                    ' group:finance does not apply; leave out "approver" to see it):',
                    "",
                    CURL.format(base=base, key=raw_key),
                    "",
                    f" Then open {base}/dev/outbox/ to see alice's email and click Approve",
                    " (the worker also prints it below).",
                    "=" * 72,
                    "",
                ]
            )
        )
