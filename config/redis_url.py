"""The two URL dialects of one Redis (pitfalls: kombu accepts `redis+socket://`, redis-py does not)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def redis_py_url(broker_url: str) -> str:
    """The broker's Redis as a redis-py URL: kombu's `redis+socket://PATH` is `unix://PATH`; a redis://,
    rediss:// or unix:// URL stays as it is; anything else (another kind of broker) gives ""."""
    if broker_url.startswith("redis+socket://"):
        return "unix://" + broker_url.removeprefix("redis+socket://")
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return broker_url
    return ""


def app_redis_url(broker_url: str) -> str:
    """The application's own Redis (cache, sessions, rate limits) beside the broker's: the same server, the
    next database number. Django's `cache.clear()` is FLUSHDB, which on the broker's database would drop the
    queued tasks with the cache."""
    url = redis_py_url(broker_url)
    if not url:
        return ""
    if url.startswith("unix://"):
        path, _sep, query_string = url.partition("?")
        query = dict(parse_qsl(query_string))
        query["db"] = str(int(query.get("db") or 0) + 1)
        return f"{path}?{urlencode(query)}"  # not urlunsplit: it drops the empty host of unix:///path
    parts = urlsplit(url)
    current = parts.path.strip("/") or "0"
    return urlunsplit(parts._replace(path=f"/{int(current) + 1}"))
