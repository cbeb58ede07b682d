"""The shared store: Redis, for several coordinator instances. Composed of one mixin per
protocol (complaints.py, incidents.py, ...); every check-then-write is one Lua script,
so it is atomic across instances. Key names come from keys.py."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ...errors import StoreError
from ..records import MEDIA
from .access import RedisAccess
from .alarms import RedisAlarms
from .complaints import RedisComplaints
from .connection import Confirmation, reachable
from .deliveries import RedisDeliveries
from .drills import RedisDrills
from .incidents import RedisIncidents
from .instances import RedisInstances
from .sms import RedisSms
from .webhooks import RedisWebhooks

# Connections to Redis per instance (COORDINATOR_REDIS_MAX_CONNECTIONS): enough for every
# send slot and intake request in flight at once, each call holding one only briefly.
DEFAULT_CONNECTIONS = 64


class RedisStore(RedisComplaints, RedisIncidents, RedisDeliveries, RedisSms, RedisDrills, RedisAccess, RedisWebhooks,
                 RedisInstances, RedisAlarms):
    def __init__(self, client: aioredis.Redis, bucket_seconds: int, prefix: str = "coord:", *,
                 confirmation: Confirmation = Confirmation()) -> None:
        super().__init__(client, bucket_seconds, prefix, confirmation=confirmation)
        self._complaint_scripts()
        self._incident_scripts()
        self._delivery_scripts()
        self._drill_scripts()
        self._webhook_scripts()
        self._instance_scripts()
        self._parsed_docs = {}  # RedisIncidents' parse cache
        self._alarm_scripts()

    @classmethod
    async def open(cls, url: str, bucket_seconds: int, prefix: str = "coord:", *,
                   max_connections: int = DEFAULT_CONNECTIONS, pool_timeout: float = 20.0) -> "RedisStore":
        """A blocking pool of `max_connections`: past it a call waits up to
        `pool_timeout` for a connection instead of failing at once (redis-py's default
        pool raises "Too many connections", which a burst of clients turned into 503s)."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout, decode_responses=True)
        return await cls.over(aioredis.Redis.from_pool(pool), bucket_seconds, prefix)

    @classmethod
    async def over(cls, client: aioredis.Redis, bucket_seconds: int, prefix: str = "coord:", *,
                   confirmation: Confirmation = Confirmation()) -> "RedisStore":
        """A store over `client` (a plain pool, or a Sentinel's: sentinel.py), checked
        reachable and brought up to date; `client` is closed if it is not."""
        store = cls(client, bucket_seconds, prefix, confirmation=confirmation)
        try:
            await store.reach()
            async with reachable():
                await store._split_outbox(keys=[store.keys.shared_outbox()],
                                          args=[f"{m}={store.keys.outbox(m)}" for m in MEDIA])
                await store._index_open_groups()
                await store._index_reach()
        except BaseException:
            await store.close()
            raise
        return store

    async def volatility(self) -> str | None:
        """Why Redis may lose what it acknowledged when its process dies (no append-only
        file and no replica connected), or None. Raises StoreError when Redis will not
        say (a managed Redis may refuse INFO): the caller decides."""
        try:
            async with reachable():
                persistence = await self._r.info("persistence")
                replication = await self._r.info("replication")
        except ResponseError as exc:
            raise StoreError(f"Redis does not tell its persistence settings: {exc}") from exc
        if int(persistence.get("aof_enabled", 0)) == 1:
            return None
        if replication.get("role") == "master" and int(replication.get("connected_slaves", 0)) > 0:
            return None
        return ("Redis keeps no append-only file (appendonly no) and has no replica: a restart of "
                "redis-server loses every write since its last snapshot, complaints answered 200 included")
