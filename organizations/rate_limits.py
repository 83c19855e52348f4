"""A sliding-window rate limit counted in Redis in one round trip.

DRF's SimpleRateThrottle keeps the window's timestamps as a pickled list in the cache: each
request gets it, unpickles it, appends, pickles and sets it again (two round trips, and CPU
that grows with the limit). This keeps the same timestamps in a Redis sorted set and does the
whole check in a Lua script, atomically, so concurrent requests cannot both take the last slot.
Same rule as DRF's: at most `limit` allowed requests in any `duration` seconds; a refused
request is not counted; the wait is until the oldest request that matters leaves the window.
"""

import os
import time

import redis

# KEYS[1]: the window; ARGV: now (seconds), duration (seconds), limit, a unique member.
# Returns nil when the request is allowed (and counted), else the seconds to wait, as text
# (Lua numbers reach Redis clients as integers).
_SLIDING_WINDOW = """
local now = tonumber(ARGV[1])
local duration = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - duration)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[4])
    redis.call('PEXPIRE', KEYS[1], math.ceil(duration * 1000))
    return false
end
local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + duration - now)
"""


class SlidingWindowCounter:
    """Windows kept in one Redis server, through a client that is safe to share across threads."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_SLIDING_WINDOW)

    def hit(self, key: str, *, limit: int, duration: float, now: float | None = None) -> float | None:
        """Count one request in the window `key`: None when it is allowed, else the seconds
        to wait before one would be. `now` is for tests; it defaults to this machine's clock,
        as DRF's throttle does."""
        now = time.time() if now is None else now
        # Two requests can share a timestamp; a sorted set keeps one member per value.
        member = f"{now!r}:{os.urandom(6).hex()}"
        wait = self._script(keys=[key], args=[repr(now), repr(float(duration)), limit, member])
        return None if wait is None else max(float(wait), 0.0)
