import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit import signing
from audit.archive import check_archive
from audit.checkpoints import load_checkpoint_documents, verified_checkpoint
from audit.selectors import checkpoints_for, sealed_events
from audit.verification import audit_problems
from organizations.models import Organization


class Command(BaseCommand):
    help = (
        "Check the audit trail: every organization's hash chain, against the signed checkpoints in "
        "the database and those kept outside it (--checkpoints), and the decisions table against "
        "the sealed outcomes. Exit non-zero on any problem. With --archive, check an exported CSV "
        "file instead (no database needed)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", type=int, default=None, help="only this organization id")
        parser.add_argument(
            "--checkpoints",
            action="append",
            default=[],
            metavar="DIR_OR_URL",
            help="checkpoints kept outside the database: a directory of .json files (the storage sink, "
            "a bucket synced down) or a URL (GET /audit/checkpoints; the API key from "
            "COUNTERSIGN_API_KEY). May be given several times.",
        )
        parser.add_argument(
            "--public-key",
            action="append",
            default=[],
            help="the Ed25519 public key (base64url) checkpoints must be signed with; default: the "
            "service's own. An auditor passes the copy they kept. Give it as --public-key=KEY: a "
            "key may begin with '-'.",
        )
        parser.add_argument("--archive", type=Path, default=None, help="an audit CSV export to check")
        parser.add_argument(
            "--head-hash",
            default=None,
            help="with --archive: a head hash recorded when the file was made; the file's last event "
            "must have it",
        )
        parser.add_argument(
            "--against-database",
            action="store_true",
            help="with --archive: also require each chain in the file to match the database's",
        )

    def handle(self, *args, org, checkpoints, public_key, archive, head_hash, against_database, **options):
        keys = public_key or [signing.public_key_text()]
        external = []
        for source in checkpoints:
            try:
                external += load_checkpoint_documents(
                    source, api_key=os.environ.get("COUNTERSIGN_API_KEY", "")
                )
            except (OSError, ValueError) as exc:
                raise CommandError(f"checkpoints {source}: {exc}") from None
        if archive is not None:
            self._check_archive(
                archive,
                org=org,
                head_hash=head_hash,
                against_database=against_database,
                external=external,
                keys=keys,
            )
            return
        problems = 0
        for problem in audit_problems(organization_id=org, external=external, public_keys=keys):
            problems += 1
            self.stderr.write(str(problem))
        if problems:
            raise CommandError(f"audit trail is NOT intact: {problems} problem(s) found")
        events = sealed_events().filter(**({"organization_id": org} if org else {})).count()
        self.stdout.write(
            f"audit trail intact: {events} sealed events verified"
            + (f", against {len(external)} checkpoint(s) from outside the database" if external else "")
        )
        organizations = Organization.objects.filter(**({"pk": org} if org else {})).order_by("pk")
        for organization_id in organizations.values_list("pk", flat=True):
            checkpoint = checkpoints_for(organization_id=organization_id).first()
            if checkpoint is None:
                continue
            self.stdout.write(
                f"checkpoint: organization {checkpoint.organization_id} at #{checkpoint.size} "
                f"{checkpoint.head_hash} ({checkpoint.sealed_at:%Y-%m-%d %H:%M:%S} UTC)"
            )

    def _check_archive(self, path: Path, *, org, head_hash, against_database, external, keys) -> None:
        verified, problems = _verified(external, keys)
        try:
            report = check_archive(path, checkpoints=verified)
        except (OSError, ValueError) as exc:
            raise CommandError(f"{path}: {exc}") from None
        problems += report.problems
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
            problems += _database_disagreements(spans)
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
        if verified:
            self.stdout.write(f"{report.checkpoints_checked} signed checkpoint(s) matched the file")


def _verified(external, keys) -> tuple[list, list[str]]:
    """The checkpoints kept outside whose signature verifies, and a problem for each other."""
    verified, problems = [], []
    for source, document in external:
        try:
            verified.append(verified_checkpoint(document, public_keys=keys, source=source))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"checkpoint {source} is not usable: {exc}")
    return verified, problems


def _database_disagreements(spans) -> list[str]:
    problems = []
    for organization_id, span in spans.items():
        stored = sealed_events().filter(organization_id=organization_id, link__seq=span.last_seq)
        if not stored.filter(link__hash=span.last_hash).exists():
            problems.append(
                f"organization {organization_id}: event #{span.last_seq} in the database does not "
                f"have the file's hash {span.last_hash}"
            )
    return problems
