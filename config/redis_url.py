"""The two URL dialects of one Redis (pitfalls: kombu accepts `redis+socket://`, redis-py does not)."""

from __future__ import annotations


def redis_py_url(broker_url: str) -> str:
    """The broker's Redis as a redis-py URL: kombu's `redis+socket://PATH` is `unix://PATH`; a redis://,
    rediss:// or unix:// URL stays as it is; anything else (another kind of broker) gives ""."""
    if broker_url.startswith("redis+socket://"):
        return "unix://" + broker_url.removeprefix("redis+socket://")
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return broker_url
    return ""
