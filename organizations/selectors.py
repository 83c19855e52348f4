from organizations.models import ApiKey
from organizations.services import api_key_hash


def api_key_find_active(*, raw_key: str) -> ApiKey | None:
    return (
        ApiKey.objects.select_related("organization")
        .filter(key_hash=api_key_hash(raw_key), revoked_at__isnull=True)
        .first()
    )
