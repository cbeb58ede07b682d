"""Secrets, sessions and failed sign-in counts in Redis; sessions and failure counts
expire by TTL, so none is kept forever."""

from __future__ import annotations

import math
from datetime import datetime

from .connection import RedisConnection, reachable

# KEYS: failures hash. ARGV: now, forget_after, ttl. The new count (1 after a long pause).
_NOTE_FAILURE = """
local last = tonumber(redis.call('HGET', KEYS[1], 'last_at') or '0')
local count = 1
if last > tonumber(ARGV[1]) - tonumber(ARGV[2]) then
  count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0') + 1
end
redis.call('HSET', KEYS[1], 'count', count, 'last_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return count
"""


class RedisAccess(RedisConnection):
    async def get_or_create_secret(self, name: str, candidate: str) -> str:
        async with reachable():
            await self._r.set(self.keys.secret(name), candidate, nx=True)
            return str(await self._r.get(self.keys.secret(name)))

    def _session_key(self, session_id: str) -> str:
        return f"{self.keys.prefix}session:{session_id}"

    def _sessions_of(self, user: str) -> str:
        return f"{self.keys.prefix}user-sessions:{user}"

    def _failures_key(self, key: str) -> str:
        return f"{self.keys.prefix}login-failures:{key}"

    async def start_session(self, session_id: str, user: str, stamp: str, now: datetime, expires: datetime) -> None:
        # A TTL relative to `now`, not an absolute time: the service's clock is its own.
        ttl = max(1, math.ceil((expires - now).total_seconds()))
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._session_key(session_id), mapping={"user": user, "stamp": stamp, "expires": expires.timestamp()})
        pipe.expire(self._session_key(session_id), ttl)
        pipe.sadd(self._sessions_of(user), session_id)
        pipe.expire(self._sessions_of(user), ttl, gt=True)
        pipe.expire(self._sessions_of(user), ttl, nx=True)
        await pipe.execute()

    async def session_holder(self, session_id: str, now: datetime) -> tuple[str, str] | None:
        user, stamp, expires = await self._r.hmget(self._session_key(session_id), "user", "stamp", "expires")
        if user is None or stamp is None or expires is None or float(expires) <= now.timestamp():
            return None
        return str(user), str(stamp)

    async def end_session(self, session_id: str) -> None:
        user = await self._r.hget(self._session_key(session_id), "user")
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(self._session_key(session_id))
        if user is not None:
            pipe.srem(self._sessions_of(str(user)), session_id)
        await pipe.execute()

    async def end_sessions_of(self, user: str) -> int:
        ids = await self._r.smembers(self._sessions_of(user))
        if not ids:
            return 0
        pipe = self._r.pipeline(transaction=True)
        for session_id in ids:
            pipe.delete(self._session_key(str(session_id)))
        pipe.delete(self._sessions_of(user))
        ended = await pipe.execute()
        return sum(int(n) for n in ended[:-1])

    async def note_login_failure(self, key: str, now: datetime, forget_after: float) -> int:
        """The key also expires `forget_after` after its last failure, so none is kept forever."""
        count = await self._r.eval(_NOTE_FAILURE, 1, self._failures_key(key), now.timestamp(), forget_after,
                                   max(1, math.ceil(forget_after)))
        return int(count)

    async def login_failures(self, key: str, now: datetime, forget_after: float) -> tuple[int, datetime | None]:
        count, last_at = await self._r.hmget(self._failures_key(key), "count", "last_at")
        if count is None or last_at is None or float(last_at) <= now.timestamp() - forget_after:
            return 0, None
        return int(count), datetime.fromtimestamp(float(last_at), tz=now.tzinfo)

    async def clear_login_failures(self, key: str) -> None:
        await self._r.delete(self._failures_key(key))
