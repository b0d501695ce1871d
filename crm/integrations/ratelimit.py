"""Per-client rate limit of the integration API: fixed one-minute windows counted in Redis.

One INCR (+ EXPIRE on the first hit) per request, shared by every server process. A fixed window lets a client
send up to twice its limit across a window boundary; that is acceptable for abuse protection and keeps the
check to one round trip. Redis at RATE_LIMIT_REDIS_URL (default: the Celery broker's Redis).

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
    url = getattr(settings, "RATE_LIMIT_REDIS_URL", "") or settings.CELERY_BROKER_URL
    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: object) -> None:
    if setting in {"RATE_LIMIT_REDIS_URL", "CELERY_BROKER_URL"}:
        _redis.cache_clear()


def rate_limit_hit(*, bucket: str, limit: int, now: float | None = None) -> RateDecision:
    """Count one request in `bucket` (a client id, or client id + address) for the current window and say
    whether it is within `limit`."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    key = f"crm:api:rl:{bucket}:{window}"
    retry_after = max(1, int(WINDOW_SECONDS - (now % WINDOW_SECONDS)) + 1)
    try:
        pipe = _redis().pipeline()
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS + 5, nx=True)
        count = int(pipe.execute()[0])
    except redis.RedisError:
        log.warning("API rate limiter unavailable; request in bucket %s let through", bucket.split(":")[0])
        return RateDecision(True, limit, limit, 0)
    return RateDecision(count <= limit, limit, max(0, limit - count), retry_after)
