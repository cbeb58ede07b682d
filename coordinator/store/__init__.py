"""Storage: narrow protocols (protocols/), one per thing kept, and `Store`, all of them;
two backends implementing them (sqlite/, redis/); `open_store` picks one from a URL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from .protocols import AccessStore, ComplaintStore, DeliveryStore, DrillStore, IncidentStore, SmsStore, Store

__all__ = ["AccessStore", "ComplaintStore", "DeliveryStore", "DrillStore", "IncidentStore", "SmsStore", "Store",
           "open_store", "shown"]


def shown(url: str) -> str:
    """A store URL fit for a log line: no password, no query (which may hold one)."""
    parts = urlsplit(url)
    _, at, hosts = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=("***@" if at else "") + hosts, query=""))


async def open_store(url: str, bucket_seconds: int, *, redis_connections: int | None = None) -> Store:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db`, or `redis://host:port/db` (an
    optional `?prefix=name:` query parameter namespaces the keys; default `coord:`), or
    `redis+sentinel://host:port,host:port,host:port/service[/db]` (redis/sentinel.py).
    `redis_connections`: the size of the Redis connection pool (default 64)."""
    parts = urlsplit(url)
    if parts.scheme == "redis+sentinel":
        from .redis.sentinel import open_sentinel_store

        if redis_connections is None:
            return await open_sentinel_store(url, bucket_seconds)
        return await open_sentinel_store(url, bucket_seconds, max_connections=redis_connections)
    if parts.scheme == "sqlite":
        from .sqlite import SqliteStore

        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ValueError(f"store URL {url!r} names no file (use sqlite:///coordinator.db)")
        return await SqliteStore.open(path, bucket_seconds)
    if parts.scheme in ("redis", "rediss", "unix"):
        from .redis import RedisStore

        query = parse_qs(parts.query)
        prefix = query.pop("prefix", ["coord:"])[0]
        clean = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        if redis_connections is None:
            return await RedisStore.open(clean, bucket_seconds, prefix)
        return await RedisStore.open(clean, bucket_seconds, prefix, max_connections=redis_connections)
    raise ValueError(f"unknown store URL {url!r} (use sqlite:///PATH or redis://HOST:PORT/DB)")
