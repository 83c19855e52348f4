"""Opened approval links, in the audit trail, bounded against scanners."""

import contextlib
import hashlib
import logging

import redis
from django.core.cache import cache
from django.db import transaction

from audit.services import audit_record
from decisions.models import ApprovalRequest

logger = logging.getLogger(__name__)

LINK_VIEW_WINDOW_SECONDS = 60
# Long enough to outlive any decision's links; views counted but never recorded expire with it.
LINK_VIEWS_UNRECORDED_SECONDS = 30 * 24 * 3600


def _views_not_yet_recorded(key: str) -> int:
    return int(cache.get(key) or 0)


def _count_unrecorded_view(key: str) -> None:
    if cache.add(key, 1, timeout=LINK_VIEWS_UNRECORDED_SECONDS):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=LINK_VIEWS_UNRECORDED_SECONDS)


def approval_link_viewed(*, request: ApprovalRequest, choice: str, ip: str, user_agent: str) -> None:
    """Record that an approval link was opened. It changes nothing else: mail scanners open
    every link, and the trail should show their visits, not act on them.

    Scanners and bots open a link over and over, so the trail gets at most one link.viewed per
    link (request and choice), IP and user agent per LINK_VIEW_WINDOW_SECONDS: the first view
    of a window is recorded at once, with `views` = 1 plus the views from that same client that
    were only counted (in the cache) since its previous event. Views after the last event are
    therefore in the trail only once that client comes back. Without the cache (Redis down)
    every view is recorded, with `views` = 1, as if each began a window."""
    client = hashlib.sha256(f"{request.pk}\n{choice}\n{ip}\n{user_agent}".encode()).hexdigest()
    window_key, unrecorded_key = f"link-viewed:window:{client}", f"link-viewed:unrecorded:{client}"
    earlier = 0
    try:
        # Read before the window opens: a view racing this one counts itself once the window
        # is open, and belongs to the next event, not this one.
        earlier = _views_not_yet_recorded(unrecorded_key)
        if not cache.add(window_key, 1, timeout=LINK_VIEW_WINDOW_SECONDS):
            _count_unrecorded_view(unrecorded_key)
            return
    except (redis.RedisError, OSError):
        logger.warning("link views not bounded: the cache is unreachable", exc_info=True)
    with transaction.atomic():
        audit_record(
            organization_id=request.decision.organization_id,
            decision_id=request.decision_id,
            event="link.viewed",
            actor=request.address,
            channel=request.channel,
            payload={"choice": choice, "ip": ip, "user_agent": user_agent, "views": 1 + earlier},
        )
    if earlier:
        # Subtract what was recorded rather than delete: views counted meanwhile are kept.
        with contextlib.suppress(redis.RedisError, OSError, ValueError):
            cache.decr(unrecorded_key, earlier)
