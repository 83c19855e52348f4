from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug
from django.db import transaction

from organizations.models import Scope
from organizations.services import api_key_create, organization_get_or_create


class Command(BaseCommand):
    help = "Create an API key for an organization (created if needed); prints the key last."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--scopes", default=Scope.DECISIONS, help="comma-separated: decisions,audit")
        parser.add_argument("--name", default="", help="a label for the key")

    def handle(self, *args, org: str, scopes: str, name: str, **options):
        scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
        try:
            validate_slug(org)
        except ValidationError:
            raise CommandError(f"--org {org!r} is not a slug (letters, digits, - and _)") from None
        try:
            with transaction.atomic():  # an unknown scope must not leave a new organization behind
                organization, created = organization_get_or_create(slug=org)
                key, raw_key = api_key_create(organization=organization, scopes=scope_list, name=name)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if created:
            self.stdout.write(f"Created organization '{organization.slug}'.")
        self.stdout.write(
            f"API key {key.prefix}… for '{organization.slug}', scopes: {', '.join(key.scopes)}. "
            "It is shown only now:"
        )
        self.stdout.write(raw_key)
