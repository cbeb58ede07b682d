"""The instance registry and reload announcements in Redis: heartbeats in a hash beside a
sorted set by last sight, requests in a sorted set by a counter (numbered and added in
one script, so none slips in behind one already read), answers in a hash per request."""

from __future__ import annotations

from datetime import datetime

from ..protocols.instances import FORGET_SECONDS, RELOADS_KEPT, Instance, ReloadOutcome, ReloadRequest
from .connection import RedisConnection, reachable

# Answers to a request are kept this long (the request itself until RELOADS_KEPT newer).
OUTCOMES_TTL = 7 * 86400

# KEYS: the counter, the requests' sorted set. ARGV: id, by, at (ISO), how many to keep.
_ANNOUNCE = """
local seq = redis.call('INCR', KEYS[1])
local doc = cjson.encode({id = ARGV[1], seq = seq, by = ARGV[2], at = ARGV[3]})
redis.call('ZADD', KEYS[2], seq, doc)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', seq - tonumber(ARGV[4]))
return doc
"""


class RedisInstances(RedisConnection):
    def _instance_scripts(self) -> None:
        self._announce = self._r.register_script(_ANNOUNCE)

    async def beat(self, instance: Instance) -> None:
        seen = instance.seen_at.timestamp()
        async with reachable():
            gone = await self._r.zrangebyscore(self.keys.instances_seen(), "-inf", f"({seen - FORGET_SECONDS}")
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.instances(), instance.id, instance.model_dump_json())
                pipe.zadd(self.keys.instances_seen(), {instance.id: seen})
                if gone:
                    pipe.hdel(self.keys.instances(), *gone)
                    pipe.zrem(self.keys.instances_seen(), *gone)
                await pipe.execute()

    async def leave(self, instance_id: str) -> None:
        async with reachable():
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hdel(self.keys.instances(), instance_id)
                pipe.zrem(self.keys.instances_seen(), instance_id)
                await pipe.execute()

    async def instances(self, seen_since: datetime) -> list[Instance]:
        async with reachable():
            ids = sorted(await self._r.zrangebyscore(self.keys.instances_seen(), seen_since.timestamp(), "+inf"))
            docs = await self._r.hmget(self.keys.instances(), ids) if ids else []
        return [Instance.model_validate_json(d) for d in docs if d]

    async def announce_reload(self, request_id: str, by: str, at: datetime) -> ReloadRequest:
        async with reachable():
            doc = await self._announce(keys=[self.keys.reload_seq(), self.keys.reload_requests()],
                                       args=[request_id, by, at.isoformat(), RELOADS_KEPT])
        return ReloadRequest.model_validate_json(doc)

    async def reload_requests(self, after_seq: int) -> list[ReloadRequest]:
        async with reachable():
            docs = await self._r.zrangebyscore(self.keys.reload_requests(), f"({after_seq}", "+inf")
        return [ReloadRequest.model_validate_json(d) for d in docs]

    async def last_reload_seq(self) -> int:
        async with reachable():
            return int(await self._r.get(self.keys.reload_seq()) or 0)

    async def record_reload_outcome(self, outcome: ReloadOutcome) -> None:
        key = self.keys.reload_outcomes(outcome.request_id)
        async with reachable():
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(key, outcome.instance, outcome.model_dump_json())
                pipe.expire(key, OUTCOMES_TTL)
                await pipe.execute()

    async def reload_outcomes(self, request_id: str) -> list[ReloadOutcome]:
        async with reachable():
            found = await self._r.hgetall(self.keys.reload_outcomes(request_id))
        return [ReloadOutcome.model_validate_json(found[k]) for k in sorted(found)]
