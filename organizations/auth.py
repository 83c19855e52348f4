"""Bearer API-key authentication, scope permissions and the per-key rate limit."""

import logging
import threading
from types import SimpleNamespace

import redis
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.dispatch import receiver
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.throttling import SimpleRateThrottle

from organizations.models import ApiKey, Scope
from organizations.rate_limits import SlidingWindowCounter
from organizations.selectors import api_key_find_active
from organizations.services import api_key_touch

logger = logging.getLogger(__name__)


def api_key_from_authorization(header: bytes) -> ApiKey | None:
    """The active key an Authorization header names: None when it is not Bearer credentials,
    AuthenticationFailed when it is but names no active key. Shared by the REST API and /mcp."""
    parts = header.split()
    if not parts or parts[0].lower() != b"bearer":
        return None
    if len(parts) != 2:
        raise AuthenticationFailed("Use the header 'Authorization: Bearer <api key>'.")
    try:
        raw_key = parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise AuthenticationFailed("Invalid or revoked API key.") from None
    key = api_key_find_active(raw_key=raw_key)
    if key is None:
        raise AuthenticationFailed("Invalid or revoked API key.")
    api_key_touch(key=key)
    return key


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        key = api_key_from_authorization(get_authorization_header(request))
        return (key, key) if key is not None else None

    def authenticate_header(self, request) -> str:
        # Having a challenge makes DRF answer 401 (not 403) to a missing or bad key.
        return 'Bearer realm="countersign"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key: cs_…"}


class _ScopedKey(BasePermission):
    scope: str

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return False  # DRF turns this into a 401, since no key was given
        if not key.has_scope(self.scope):
            self.message = f"This API key lacks the '{self.scope}' scope."
            return False
        return True


class HasDecisionsScope(_ScopedKey):
    scope = Scope.DECISIONS


class HasAuditScope(_ScopedKey):
    scope = Scope.AUDIT


_counter = None
_window_counter = None
_counter_lock = threading.Lock()


def rate_limit_cache():
    """One cache client for the whole process. Django's `cache` is per thread, and under ASGI
    every request runs in a thread of its own: each would build a client and open a new Redis
    connection. The backend's connection pool is thread-safe, so the process shares one."""
    global _counter
    if _counter is None:
        with _counter_lock:
            if _counter is None:
                _counter = caches.create_connection(DEFAULT_CACHE_ALIAS)
    return _counter


def rate_limit_window_counter() -> SlidingWindowCounter | None:
    """The per-key windows in the cache's Redis, through the same connection pool; None when
    the cache is not Redis (locmem in development), where DRF's throttle counts instead."""
    global _window_counter
    cache = rate_limit_cache()
    if not isinstance(cache, RedisCache):
        return None
    if _window_counter is None:
        with _counter_lock:
            if _window_counter is None:
                _window_counter = SlidingWindowCounter(cache._cache.get_client(write=True))
    return _window_counter


@receiver(setting_changed)
def _forget_rate_limit_cache(*, setting, **kwargs) -> None:
    # As Django does for its own caches when a test overrides CACHES.
    global _counter, _window_counter
    if setting == "CACHES":
        _counter = _window_counter = None


class ApiKeyRateThrottle(SimpleRateThrottle):
    """API_RATE_LIMIT per key, counted in the shared cache (Redis in production): one Redis
    round trip a request (organizations.rate_limits); DRF's own counting on other caches."""

    scope = "api_key"
    _redis_wait: float | None = None

    @property
    def cache(self):  # type: ignore[override]  # DRF's class attribute, chosen per request here
        return rate_limit_cache()

    def allow_request(self, request, view) -> bool:
        try:
            return self._allow_request(request, view)
        except (redis.RedisError, OSError):
            # The cache (Redis) is down. Refusing every agent would turn a cache outage into
            # an API outage; the limit is a guard against floods, so it fails open.
            logger.warning("rate limit not applied: the cache is unreachable", exc_info=True)
            return True

    def _allow_request(self, request, view) -> bool:
        counter = rate_limit_window_counter()
        if counter is None:
            return super().allow_request(request, view)
        if self.rate is None or not isinstance(request.auth, ApiKey):
            return True
        window = self.cache.make_key(f"rate_limit:{self.scope}:{request.auth.pk}")
        # num_requests and duration: parsed from the rate by SimpleRateThrottle.__init__.
        limit, duration = self.num_requests, self.duration  # type: ignore[attr-defined]
        self._redis_wait = counter.hit(window, limit=limit, duration=duration)
        return self._redis_wait is None

    def wait(self) -> float | None:
        if self._redis_wait is not None:
            return self._redis_wait
        return super().wait()

    def get_cache_key(self, request, view) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


def rate_limit_wait(key: ApiKey) -> float | None:
    """Count one request against the key's API_RATE_LIMIT, in the same budget as the REST API:
    None when it is allowed, else the seconds to wait (for endpoints outside DRF, like /mcp)."""
    throttle = ApiKeyRateThrottle()
    if throttle.allow_request(SimpleNamespace(auth=key), None):
        return None
    return throttle.wait() or 1.0
