from broker.compiled_reads import CompiledRead
from organizations.models import ApiKey
from organizations.services import api_key_hash

# Every API request looks its key up: compiling that query cost most of the lookup's CPU. The
# row is still read every time, so a revoked key fails on the next request and the
# organization (its settings_version) is as fresh as the ORM would read it.
_active_key = CompiledRead(
    ApiKey,
    lambda key_hash: ApiKey.objects.select_related("organization").filter(
        key_hash=key_hash, revoked_at__isnull=True
    ),
    "\x00api key hash\x00",
)


def api_key_find_active(*, raw_key: str) -> ApiKey | None:
    """The unrevoked key with this raw value, its organization loaded with it: one indexed query."""
    return _active_key.one(api_key_hash(raw_key))
