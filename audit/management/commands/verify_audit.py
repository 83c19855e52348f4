from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.archive import check_archive
from audit.models import AuditEvent, ChainHead
from audit.selectors import audit_chain_problems


class Command(BaseCommand):
    help = (
        "Check the audit trail's hash chains; exit non-zero if any row was altered, inserted or "
        "removed. With --archive, check an exported CSV file instead (no database needed)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", type=int, default=None, help="only this organization id")
        parser.add_argument("--archive", type=Path, default=None, help="an audit CSV export to check")
        parser.add_argument(
            "--head-hash",
            default=None,
            help="with --archive: the chain head hash recorded when the file was made; the file's "
            "last event must have it",
        )
        parser.add_argument(
            "--against-database",
            action="store_true",
            help="with --archive: also require each chain in the file to match the database's",
        )

    def handle(self, *args, org: int | None, archive: Path | None, head_hash, against_database, **options):
        if archive is not None:
            self._check_archive(archive, org=org, head_hash=head_hash, against_database=against_database)
            return
        problems = 0
        for problem in audit_chain_problems(organization_id=org):
            problems += 1
            self.stderr.write(str(problem))
        if problems:
            raise CommandError(f"audit trail is NOT intact: {problems} problem(s) found")
        count = AuditEvent.objects.filter(**({"organization_id": org} if org else {})).count()
        self.stdout.write(f"audit trail intact: {count} events verified")
        for head in ChainHead.objects.filter(**({"organization_id": org} if org else {})).order_by("pk"):
            self.stdout.write(f"chain head: organization {head.organization_id} at #{head.seq} {head.hash}")

    def _check_archive(self, path: Path, *, org, head_hash, against_database) -> None:
        try:
            report = check_archive(path)
        except (OSError, ValueError) as exc:
            raise CommandError(f"{path}: {exc}") from None
        problems = list(report.problems)
        unlisted = report.problem_count - len(report.problems)
        spans = {k: v for k, v in report.spans.items() if org is None or k == org}
        if not spans:
            problems.append("the file holds no events" + (f" of organization {org}" if org else ""))
        if head_hash and len(spans) > 1:
            raise CommandError(
                "the file holds several organizations: name the one --head-hash is for with --org"
            )
        if head_hash and spans and next(iter(spans.values())).last_hash != head_hash:
            problems.append(f"the file does not end at the recorded chain head {head_hash}")
        if against_database:
            for organization_id, span in spans.items():
                stored = AuditEvent.objects.filter(organization_id=organization_id, seq=span.last_seq)
                if not stored.filter(hash=span.last_hash).exists():
                    problems.append(
                        f"organization {organization_id}: event #{span.last_seq} in the database does not "
                        f"have the file's hash {span.last_hash}"
                    )
        for problem in problems:
            self.stderr.write(problem)
        if unlisted:
            self.stderr.write(f"… and {unlisted} more")
        if problems:
            raise CommandError(f"archive {path} is NOT intact: {len(problems) + unlisted} problem(s) found")
        for organization_id, span in sorted(spans.items()):
            self.stdout.write(
                f"archive intact: organization {organization_id} ({span.organization}) events "
                f"#{span.first_seq}..#{span.last_seq} ({span.events}), last hash {span.last_hash}"
            )
