from django.conf import settings
from django.core.management.base import BaseCommand

from organizations.services import api_key_create, organization_get_or_create

CURL = """curl -s -X POST {base}/decisions \\
  -H 'Authorization: Bearer {key}' \\
  -H 'Content-Type: application/json' \\
  -d '{{"action": "Refund $120 to order #1042", "details": {{"amount": 120, "customer": "Ada"}},
       "approver": "alice@example.com", "timeout_minutes": 30}}'"""


class Command(BaseCommand):
    help = "For `make dev`: a demo organization, a fresh API key, and a curl to try it with."

    def handle(self, *args, **options):
        organization, _ = organization_get_or_create(slug="demo", name="Demo Inc")
        _, raw_key = api_key_create(organization=organization, scopes=["decisions", "audit"], name="make dev")
        base = settings.PUBLIC_BASE_URL
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "=" * 72,
                    f" Countersign is starting at {base}  (API docs: {base}/docs)",
                    f" Demo API key (organization 'demo'): {raw_key}",
                    " Ask alice for sign-off:",
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
