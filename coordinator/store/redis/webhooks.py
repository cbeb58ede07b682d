"""Webhook queues in Redis: per subscriber a sorted set of the event ids waiting (score:
due, or a claim's lease end), each event a hash (doc, owner, done) that outlives its
delivery by KEEP_FINISHED so that the same event is not queued twice. Each
check-then-write is one Lua script."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from ..protocols.webhooks import KEEP_FINISHED, WebhookDelivery
from .connection import RedisConnection, reachable

# ARGV[1]: the subscribers' set; then 6 per delivery: event hash, queue, event id, due,
# doc, subscriber. A delivery whose hash exists (queued, or finished not long ago) is skipped.
_ENQUEUE = """
local added = 0
for i = 2, #ARGV, 6 do
  if redis.call('EXISTS', ARGV[i]) == 0 then
    redis.call('HSET', ARGV[i], 'doc', ARGV[i+4], 'owner', '')
    redis.call('ZADD', ARGV[i+1], ARGV[i+3], ARGV[i+2])
    redis.call('SADD', ARGV[1], ARGV[i+5])
    added = added + 1
  end
end
return added
"""

# KEYS[1]: the queue. ARGV: now, lease end, limit, the event hashes' key prefix, owner.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local docs = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  redis.call('HSET', ARGV[4] .. id, 'owner', ARGV[5])
  docs[#docs+1] = redis.call('HGET', ARGV[4] .. id, 'doc')
end
return docs
"""

# KEYS: event hash, queue. ARGV: owner, due, doc, event id.
_RETRY = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or not redis.call('ZSCORE', KEYS[2], ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'owner', '')
return 1
"""

# KEYS: event hash, queue. ARGV: event id, seconds to remember it.
_FINISH = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'owner', '', 'done', '1')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RedisWebhooks(RedisConnection):
    def _webhook_scripts(self) -> None:
        self._enqueue_webhooks = self._r.register_script(_ENQUEUE)
        self._claim_webhooks = self._r.register_script(_CLAIM)
        self._retry_webhook = self._r.register_script(_RETRY)
        self._finish_webhook = self._r.register_script(_FINISH)

    async def enqueue_webhooks(self, deliveries: Sequence[WebhookDelivery]) -> int:
        if not deliveries:
            return 0
        args: list[str | float] = [self.keys.webhook_subscribers()]
        for d in deliveries:
            args += [self.keys.webhook(d.subscriber, d.event_id), self.keys.webhook_queue(d.subscriber), d.event_id,
                     d.created_at.timestamp(), d.model_dump_json(), d.subscriber]
        async with reachable():
            return int(await self._enqueue_webhooks(keys=[], args=args))

    async def claim_webhooks(self, subscriber: str, owner: str, now: datetime, lease_seconds: float,
                             limit: int) -> list[WebhookDelivery]:
        async with reachable():
            docs = await self._claim_webhooks(
                keys=[self.keys.webhook_queue(subscriber)],
                args=[now.timestamp(), now.timestamp() + lease_seconds, limit, self.keys.webhook(subscriber), owner])
        return [WebhookDelivery.model_validate_json(d) for d in docs if d]

    async def retry_webhook(self, delivery: WebhookDelivery, owner: str, due: datetime) -> bool:
        async with reachable():
            done = await self._retry_webhook(
                keys=[self.keys.webhook(delivery.subscriber, delivery.event_id),
                      self.keys.webhook_queue(delivery.subscriber)],
                args=[owner, due.timestamp(), delivery.model_dump_json(), delivery.event_id])
        return int(done) == 1

    async def finish_webhook(self, subscriber: str, event_id: str, now: datetime) -> None:
        async with reachable():
            await self._finish_webhook(
                keys=[self.keys.webhook(subscriber, event_id), self.keys.webhook_queue(subscriber)],
                args=[event_id, int(KEEP_FINISHED.total_seconds())])

    async def webhook_queue_depths(self) -> dict[str, int]:
        async with reachable():
            subscribers = sorted(await self._r.smembers(self.keys.webhook_subscribers()))
            async with self._r.pipeline(transaction=False) as pipe:
                for subscriber in subscribers:
                    pipe.zcard(self.keys.webhook_queue(subscriber))
                counts = await pipe.execute()
        return {s: int(n) for s, n in zip(subscribers, counts) if int(n)}
