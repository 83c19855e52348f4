import base64
import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from organizations.models import ApiKey, Organization, Scope, WebhookSecret

KEY_PREFIX = "cs_"
ROTATION_OVERLAP = timedelta(hours=24)
# last_used_at is a hint for admins, not a log: one write a minute per key is plenty.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def api_key_hash(raw_key: str) -> str:
    # Keys carry 256 random bits, so a plain SHA-256 cannot be brute-forced and lets us find
    # the key with one indexed lookup.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def organization_get_or_create(*, slug: str, name: str = "") -> tuple[Organization, bool]:
    return Organization.objects.get_or_create(slug=slug, defaults={"name": name or slug})


@transaction.atomic
def api_key_create(*, organization: Organization, scopes: list[str], name: str = "") -> tuple[ApiKey, str]:
    """Create a key and return it with the raw key, which is never stored and cannot be shown again."""
    unknown = set(scopes) - set(Scope.values)
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {Scope.values}")
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        organization=organization,
        name=name,
        prefix=raw_key[:11],
        key_hash=api_key_hash(raw_key),
        scopes=sorted(set(scopes)),
    )
    return key, raw_key


def api_key_revoke(*, key: ApiKey) -> None:
    """Revoke at once: authentication reads revoked_at on every request, nothing caches keys."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_touch(*, key: ApiKey) -> None:
    now = timezone.now()
    if key.last_used_at and key.last_used_at >= now - LAST_USED_RESOLUTION:
        return  # fresh enough, as loaded: no round trip at all
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now)


def _new_webhook_secret() -> str:
    # Standard Webhooks: "whsec_" + base64 of the raw key; 32 bytes, as HMAC-SHA256 wants.
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@transaction.atomic
def webhook_secret_current(*, organization: Organization) -> WebhookSecret:
    """The organization's current secret, created on first use."""
    Organization.objects.select_for_update().filter(pk=organization.pk).first()  # one creator at a time
    current = organization.webhook_secrets.filter(retired_at__isnull=True).order_by("-created_at").first()
    return current or WebhookSecret.objects.create(organization=organization, secret=_new_webhook_secret())


@transaction.atomic
def webhook_secret_rotate(*, organization: Organization) -> WebhookSecret:
    """Retire the current secret (it keeps signing for ROTATION_OVERLAP) and start a new one."""
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    organization.webhook_secrets.filter(retired_at__isnull=True).update(retired_at=timezone.now())
    return WebhookSecret.objects.create(organization=organization, secret=_new_webhook_secret())


def webhook_signing_secrets(*, organization: Organization) -> list[str]:
    """Every secret a callback is signed with now: the current one first, then any retired
    within ROTATION_OVERLAP. Creates the current one if the organization has none."""
    current = webhook_secret_current(organization=organization)
    recent = organization.webhook_secrets.filter(retired_at__gt=timezone.now() - ROTATION_OVERLAP)
    return [current.secret, *recent.order_by("-retired_at").values_list("secret", flat=True)]
