from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditEvent
from audit.selectors import audit_chain_problems


class Command(BaseCommand):
    help = "Check the audit trail's hash chains; exit non-zero if any row was altered, inserted or removed."

    def add_arguments(self, parser):
        parser.add_argument("--org", type=int, default=None, help="only this organization id")

    def handle(self, *args, org: int | None, **options):
        problems = 0
        for problem in audit_chain_problems(organization_id=org):
            problems += 1
            self.stderr.write(str(problem))
        if problems:
            raise CommandError(f"audit trail is NOT intact: {problems} problem(s) found")
        count = AuditEvent.objects.filter(**({"organization_id": org} if org else {})).count()
        self.stdout.write(f"audit trail intact: {count} events verified")
