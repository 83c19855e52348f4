"""The sign-in form's rate limits: the same throttle and shared cache as the API's per-key
limit (organizations.auth), counted per address and per client IP."""

import hashlib
import logging

import redis
from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from organizations.auth import rate_limit_cache

logger = logging.getLogger(__name__)


class _SignInThrottle(SimpleRateThrottle):
    def __init__(self, *, scope: str, rate: str, ident: str) -> None:
        self.scope, self.rate, self.ident = scope, rate, ident
        self.num_requests, self.duration = self.parse_rate(rate)

    @property
    def cache(self):
        return rate_limit_cache()

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.ident}


def sign_in_wait(*, address: str, ip: str) -> float | None:
    """Count one sign-in request for this address and this IP: None when allowed, else the
    seconds to wait. Unknown addresses count exactly as known ones do, so the answer says
    nothing about who is an approver. A cache outage fails open, as the API's limit does."""
    # Hashed: the cache never holds the addresses people typed.
    address_key = hashlib.sha256(address.encode()).hexdigest()
    throttles = [
        _SignInThrottle(scope="portal_ip", rate=settings.PORTAL_SIGN_IN_IP_RATE_LIMIT, ident=ip or "-"),
        _SignInThrottle(scope="portal_address", rate=settings.PORTAL_SIGN_IN_RATE_LIMIT, ident=address_key),
    ]
    try:
        for throttle in throttles:
            if not throttle.allow_request(None, None):
                return throttle.wait() or 1.0
    except (redis.RedisError, OSError):
        logger.warning("sign-in rate limit not applied: the cache is unreachable", exc_info=True)
    return None
