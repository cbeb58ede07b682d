"""SMS indexes and opt-outs in Redis: a sorted set per phone of the SMS accepted for it,
one sorted set of the SMS still to settle, one set of opted-out phones. The deliveries'
status script (deliveries.py) keeps the two indexes."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from ...models import Delivery, DeliveryKey
from .connection import RedisConnection, reachable


class RedisSms(RedisConnection):
    async def sms_sent_to(self, phone: str, limit: int = 20) -> list[Delivery]:
        async with reachable():
            ids = await self._r.zrevrange(self.keys.sms_to(phone), 0, limit - 1)
        return await self._docs(ids)

    async def unsettled_sms(self, before: datetime, limit: int) -> list[Delivery]:
        async with reachable():
            ids = await self._r.zrangebyscore(self.keys.unsettled(), "-inf", before.timestamp(), start=0, num=limit)
        return await self._docs(ids)

    async def defer_unsettled(self, keys: Sequence[DeliveryKey], until: datetime | None) -> None:
        if not keys:
            return
        ids = [k.as_id() for k in keys]
        async with reachable():
            if until is None:
                await self._r.zrem(self.keys.unsettled(), *ids)
            else:
                await self._r.zadd(self.keys.unsettled(), {d: until.timestamp() for d in ids}, xx=True)

    async def set_opt_out(self, phone: str, opted_out: bool) -> None:
        async with reachable():
            if opted_out:
                await self._r.sadd(self.keys.opt_outs(), phone)
            else:
                await self._r.srem(self.keys.opt_outs(), phone)

    async def opted_out(self) -> set[str]:
        async with reachable():
            return set(await self._r.smembers(self.keys.opt_outs()))
