"""Per-client rate limit of the integration API: fixed one-minute windows counted in Redis.

One INCR (+ EXPIRE on the first hit, in one Lua script) per request, shared by every server process. A
fixed window lets a client send up to twice its limit across a window boundary; that is acceptable for
abuse protection and keeps the check to one round trip. Redis at settings.REDIS_URL (the application's
own Redis URL, in redis-py's dialect; never the Celery broker URL, which may be kombu's `redis+socket://`).

If Redis is unreachable the request is let through and a warning logged: recording a consent withdrawal must
not fail because the limiter is down (availability over strictness, on purpose).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)


# INCR, and the window's expiry on its first hit, as one atomic server-side step: one command per request
# (a MULTI/INCR/EXPIRE/EXEC pipeline was four), and never a counter left without its expiry.
_COUNT_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@lru_cache(maxsize=1)
def _count_hit() -> redis.commands.core.Script:
    return _redis().register_script(_COUNT_HIT)


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: object) -> None:
    if setting == "REDIS_URL":
        _redis.cache_clear()
        _count_hit.cache_clear()


def rate_limit_hit(*, bucket: str, limit: int, now: float | None = None) -> RateDecision:
    """Count one request in `bucket` (a client id, or client id + address) for the current window and say
    whether it is within `limit`."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    key = f"crm:api:rl:{bucket}:{window}"
    retry_after = max(1, int(WINDOW_SECONDS - (now % WINDOW_SECONDS)) + 1)
    try:
        count = int(_count_hit()(keys=[key], args=[WINDOW_SECONDS + 5]))
    except redis.RedisError:
        log.warning("API rate limiter unavailable; request in bucket %s let through", bucket.split(":")[0])
        return RateDecision(True, limit, limit, 0)
    return RateDecision(count <= limit, limit, max(0, limit - count), retry_after)
