from django.core.management.base import BaseCommand, CommandError

from organizations.models import Organization
from organizations.services import ROTATION_OVERLAP, webhook_secret_current, webhook_secret_rotate


class Command(BaseCommand):
    help = "Print the organization's current callback signing secret (whsec_…); --rotate makes a new one."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        hours = ROTATION_OVERLAP.total_seconds() / 3600
        parser.add_argument(
            "--rotate", action="store_true", help=f"new secret; the old one keeps signing for {hours:g} hours"
        )

    def handle(self, *args, org: str, rotate: bool, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization '{org}'.")
        if rotate:
            secret = webhook_secret_rotate(organization=organization)
            self.stdout.write(
                f"Rotated. Callbacks carry both signatures for the next "
                f"{ROTATION_OVERLAP.total_seconds() / 3600:g} hours; switch your receiver to:"
            )
        else:
            secret = webhook_secret_current(organization=organization)
        self.stdout.write(secret.secret)
