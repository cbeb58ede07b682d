"""Deliveries in Redis: each delivery a hash, one outbox sorted set per medium (score: due,
or a claim's lease end), provider ids as keys. Status updates are one Lua script that
also keeps the SMS indexes of sms.py."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from ...errors import StoreError
from ...models import DELIVERY_RANK, Delivery, DeliveryKey
from ..records import MEDIA, Moved, StatusUpdate
from ..rules import claimed, medium_of
from .connection import RedisConnection, reachable

_DAY = 86400
# Each phone's SMS index (sms_sent_to) keeps its newest messages for a month.
SMS_INDEX_KEEP = 64
SMS_INDEX_TTL = 31 * _DAY

# KEYS: delivery hash, incident's delivery set, outbox. ARGV: rank, json, delivery id, due.
_ADD_DELIVERY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rank', ARGV[1], 'doc', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
if ARGV[5] ~= '' then redis.call('SADD', ARGV[5], ARGV[6]) end
return 1
"""

# KEYS: the outboxes to claim from. ARGV: now, lease end, limit, the delivery hashes'
# key prefix, the claims set (keys.claims). The oldest due ids across them, their score
# moved to the lease's end so that no one else takes them before it lapses; each
# delivery's first claim time is kept in its hash and in the claims set.
_CLAIM = """
local limit = tonumber(ARGV[3])
local due = {}
for k, key in ipairs(KEYS) do
  local found = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #found, 2 do due[#due+1] = {tonumber(found[i+1]), found[i], k} end
end
if #KEYS > 1 then table.sort(due, function(a, b) return a[1] < b[1] end) end
local ids = {}
for i = 1, math.min(limit, #due) do
  redis.call('ZADD', KEYS[due[i][3]], ARGV[2], due[i][2])
  redis.call('HSETNX', ARGV[4] .. due[i][2], 'claimed_at', ARGV[1])
  redis.call('ZADD', ARGV[5], 'NX', ARGV[1], due[i][2])
  ids[#ids+1] = due[i][2]
end
return ids
"""

# ARGV[1]: the key prefix of the phones' SMS index (keys.sms_to), ARGV[2]: the
# unsettled-SMS set, ARGV[3]: how many SMS each phone's index keeps, ARGV[4]: its TTL,
# ARGV[5]: the counter that orders the index (keys.sms_order), ARGV[6]: the claims set
# (keys.claims, left by a finished delivery); then 12 per update: delivery hash key, its outbox, provider key ('' for none),
# delivery id, rank, status, at, provider id, error, finish ('1'/'0'), at as epoch
# seconds, '1' for an SMS. The rule of rules.apply_update: the status only moves forward;
# a provider id is taken when moving or when none is known. An SMS moving to 'sent'
# enters the unsettled set, moving on leaves it; an accepted SMS (finish, sent or
# delivered) enters its phone's index. Returns per update the stored doc ('' if
# unknown) and 1 if moved. A phone's index is ordered by a counter (the order the
# acceptances were recorded, across instances), not by clocks that may agree to the second.
_UPDATE_DELIVERIES = """
local out = {}
for i = 7, #ARGV, 12 do
  local doc = redis.call('HGET', ARGV[i], 'doc')
  local moved = 0
  if doc then
    local d = cjson.decode(doc)
    local changed = false
    if tonumber(ARGV[i+4]) > tonumber(redis.call('HGET', ARGV[i], 'rank')) then
      d['status'] = ARGV[i+5]
      d['updated_at'] = ARGV[i+6]
      if ARGV[i+7] ~= '' then d['provider_id'] = ARGV[i+7] end
      if ARGV[i+8] ~= '' then d['error'] = ARGV[i+8] end
      redis.call('HSET', ARGV[i], 'rank', ARGV[i+4])
      moved, changed = 1, true
    elseif ARGV[i+7] ~= '' and d['provider_id'] == cjson.null then
      d['provider_id'] = ARGV[i+7]
      changed = true
    end
    if changed then
      doc = cjson.encode(d)
      redis.call('HSET', ARGV[i], 'doc', doc)
      if ARGV[i+7] ~= '' and d['provider_id'] == ARGV[i+7] then redis.call('SET', ARGV[i+2], ARGV[i+3]) end
    end
    if ARGV[i+9] == '1' then
      redis.call('ZREM', ARGV[i+1], ARGV[i+3])
      redis.call('ZREM', ARGV[6], ARGV[i+3])
    end
    if ARGV[i+11] == '1' then
      if moved == 1 then
        if d['status'] == 'sent' then redis.call('ZADD', ARGV[2], ARGV[i+10], ARGV[i+3])
        else redis.call('ZREM', ARGV[2], ARGV[i+3]) end
      end
      if ARGV[i+9] == '1' and (d['status'] == 'sent' or d['status'] == 'delivered') then
        local phone = ARGV[1] .. d['address']
        if not redis.call('ZSCORE', phone, ARGV[i+3]) then
          redis.call('ZADD', phone, redis.call('INCR', ARGV[5]), ARGV[i+3])
        end
        redis.call('ZREMRANGEBYRANK', phone, 0, -tonumber(ARGV[3]) - 1)
        redis.call('EXPIRE', phone, ARGV[4])
      end
    end
  else
    doc = ''
  end
  out[#out+1] = doc
  out[#out+1] = moved
end
return out
"""

# KEYS: the shared outbox of old. ARGV: the outbox key of each medium, as
# "medium=key". Moves every id, with its score, to its medium's outbox.
_SPLIT_OUTBOX = """
local target = {}
for _, pair in ipairs(ARGV) do
  local eq = string.find(pair, '=', 1, true)
  target[string.sub(pair, 1, eq - 1)] = string.sub(pair, eq + 1)
end
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do
  local channel = string.match(all[i], '[^:]*$')
  local medium = string.match(channel, '^[^-]*')
  redis.call('ZADD', target[medium] or target['sms'], all[i+1], all[i])
end
redis.call('DEL', KEYS[1])
return #all / 2
"""


# KEYS: the version's reach set (keys.script_reach), the incident's acks. ARGV:
# ":version:-". How many people were sent the version and have no acknowledgement of it
# (rules.ack_key): the set's size less its people among the acks (read: the acks only).
_UNACKED = """
local n = redis.call('SCARD', KEYS[1])
if n == 0 then return 0 end
local suffix = ARGV[1]
for _, field in ipairs(redis.call('HKEYS', KEYS[2])) do
  if #field > #suffix and string.sub(field, -#suffix) == suffix
     and redis.call('SISMEMBER', KEYS[1], string.sub(field, 1, #field - #suffix)) == 1 then
    n = n - 1
  end
end
return n
"""


class RedisDeliveries(RedisConnection):
    def _delivery_scripts(self) -> None:
        self._unacked = self._r.register_script(_UNACKED)
        self._add_delivery = self._r.register_script(_ADD_DELIVERY)
        self._claim = self._r.register_script(_CLAIM)
        self._update_deliveries = self._r.register_script(_UPDATE_DELIVERIES)
        self._split_outbox = self._r.register_script(_SPLIT_OUTBOX)

    async def add_delivery(self, delivery: Delivery, due: datetime | None = None) -> bool:
        did = delivery.key.as_id()
        async with reachable():
            added = await self._add_delivery(
                keys=[self.keys.delivery(did), self.keys.deliveries(delivery.key.incident_id),
                      self.keys.outbox(delivery.key.medium)],
                args=[DELIVERY_RANK[delivery.status], delivery.model_dump_json(), did,
                      (due or delivery.updated_at).timestamp(), *self._reach(delivery.key)],
            )
        return bool(added)

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> int:
        async with reachable():
            async with self._r.pipeline(transaction=False) as pipe:
                for d in deliveries:
                    did = d.key.as_id()
                    await self._add_delivery(
                        keys=[self.keys.delivery(did), self.keys.deliveries(d.key.incident_id),
                              self.keys.outbox(d.key.medium)],
                        args=[DELIVERY_RANK[d.status], d.model_dump_json(), did, d.updated_at.timestamp(),
                              *self._reach(d.key)],
                        client=pipe,
                    )
                results = await pipe.execute()
        return sum(int(r) for r in results)

    async def claim_deliveries(
        self, owner: str, now: datetime, lease_seconds: float, limit: int, medium: str | None = None
    ) -> list[Delivery]:
        outboxes = [self.keys.outbox(m) for m in (MEDIA if medium is None else (medium,))]
        async with reachable():
            ids = await self._claim(keys=outboxes, args=[now.timestamp(), now.timestamp() + lease_seconds, limit,
                                                         self.keys.delivery(""), self.keys.claims()])
            if not ids:
                return []
            async with self._r.pipeline(transaction=False) as pipe:
                for did in ids:
                    pipe.hmget(self.keys.delivery(did), "doc", "claimed_at")
                rows = await pipe.execute()
        return [claimed(doc, at) for doc, at in rows if doc]

    async def renew_claims(self, owner: str, keys: Sequence[DeliveryKey], until: datetime) -> None:
        # The outbox keeps no owner: XX renews only what is still there (not finished).
        by_medium: dict[str, list[str]] = {}
        for key in keys:
            by_medium.setdefault(key.medium, []).append(key.as_id())
        async with reachable():
            async with self._r.pipeline(transaction=False) as pipe:
                for medium, ids in by_medium.items():
                    for i in range(0, len(ids), 1000):
                        pipe.zadd(self.keys.outbox(medium), {d: until.timestamp() for d in ids[i : i + 1000]}, xx=True)
                await pipe.execute()

    async def finish_delivery(self, key: DeliveryKey) -> None:
        async with reachable():
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.zrem(self.keys.outbox(key.medium), key.as_id())
                pipe.zrem(self.keys.claims(), key.as_id())
                await pipe.execute()

    async def retry_delivery(self, key: DeliveryKey, due: datetime, *, attempts: int, error: str) -> None:
        current = await self.get_delivery(key)
        if current is None:
            raise StoreError(f"no delivery {key.as_id()}")
        doc = current.model_copy(update={"attempts": attempts, "error": error}).model_dump_json()
        async with reachable():
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.delivery(key.as_id()), "doc", doc)
                pipe.zadd(self.keys.outbox(key.medium), {key.as_id(): due.timestamp()})
                await pipe.execute()

    async def delivery_by_provider(self, provider_id: str) -> Delivery | None:
        async with reachable():
            did = await self._r.get(self.keys.provider(provider_id))
            doc = await self._r.hget(self.keys.delivery(did), "doc") if did else None
        return Delivery.model_validate_json(doc) if doc else None

    async def outbox_size(self) -> int:
        async with reachable():
            async with self._r.pipeline(transaction=False) as pipe:
                for medium in MEDIA:
                    pipe.zcard(self.keys.outbox(medium))
                return sum(int(n) for n in await pipe.execute())

    async def get_delivery(self, key: DeliveryKey) -> Delivery | None:
        async with reachable():
            doc = await self._r.hget(self.keys.delivery(key.as_id()), "doc")
        return Delivery.model_validate_json(doc) if doc else None

    async def update_deliveries(self, updates: Sequence[StatusUpdate]) -> list[Moved]:
        if not updates:
            return []
        async with reachable():
            by_sid = [u.provider_id for u in updates if u.key is None and u.provider_id]
            # Provider ids given in this batch with their delivery count as known too.
            owners = {u.provider_id: u.key.as_id() for u in updates if u.key is not None and u.provider_id}
            if by_sid:
                found = await self._r.mget([self.keys.provider(s) for s in by_sid])
                owners |= {sid: did for sid, did in zip(by_sid, found) if did}
            args: list[Any] = [self.keys.sms_to(""), self.keys.unsettled(), SMS_INDEX_KEEP, SMS_INDEX_TTL,
                               self.keys.sms_order(), self.keys.claims()]
            known: list[bool] = []
            for u in updates:
                did = u.key.as_id() if u.key is not None else owners.get(u.provider_id or "")
                known.append(did is not None)
                if did is None:
                    continue
                medium = u.key.medium if u.key is not None else medium_of(did)
                args += [self.keys.delivery(did), self.keys.outbox(medium),
                         self.keys.provider(u.provider_id) if u.provider_id else "", did,
                         DELIVERY_RANK[u.status], u.status.value, u.at.isoformat(), u.provider_id or "",
                         u.error or "", "1" if u.finish else "0", u.at.timestamp(), "1" if medium == "sms" else "0"]
            answers = iter(await self._update_deliveries(keys=[], args=args) if any(known) else [])
        out: list[Moved] = []
        for found in known:
            doc, moved = (next(answers), next(answers)) if found else ("", 0)
            out.append(Moved(Delivery.model_validate_json(doc) if doc else None, bool(moved)))
        return out

    async def deliveries(self, incident_id: str) -> list[Delivery]:
        async with reachable():
            ids = sorted(await self._r.smembers(self.keys.deliveries(incident_id)))
        return await self._docs(ids)

    def _reach(self, key: DeliveryKey) -> tuple[str, str]:
        """_ADD_DELIVERY's last two arguments: a script delivery's reach set and person."""
        return (self.keys.script_reach(key.incident_id, key.version), key.person_id) if key.is_script else ("", "")

    async def _index_reach(self) -> None:
        """Stores written before the reach sets: fill them in from the delivery ids, once
        (repeating it is harmless, so two instances starting at once may both)."""
        if await self._r.exists(self.keys.reach_index()):
            return
        for incident_id in await self._r.zrange(self.keys.incidents(), 0, -1):
            keys = [DeliveryKey.parse(i) for i in await self._r.smembers(self.keys.deliveries(incident_id))]
            async with self._r.pipeline(transaction=False) as pipe:
                for key in keys:
                    if key is not None and key.is_script:
                        pipe.sadd(self.keys.script_reach(key.incident_id, key.version), key.person_id)
                await pipe.execute()
        await self._r.set(self.keys.reach_index(), "1")

    async def unacknowledged(self, versions: Mapping[str, int]) -> dict[str, int]:
        if not versions:
            return {}
        async with reachable():
            async with self._r.pipeline(transaction=False) as pipe:
                for incident_id, version in versions.items():
                    await self._unacked(keys=[self.keys.script_reach(incident_id, version),
                                              self.keys.acks(incident_id)],
                                        args=[f":{version}:-"], client=pipe)
                counts = await pipe.execute()
        return {incident_id: int(n) for incident_id, n in zip(versions, counts)}

    async def oldest_claim(self) -> datetime | None:
        async with reachable():
            oldest = await self._r.zrange(self.keys.claims(), 0, 0, withscores=True)
        return datetime.fromtimestamp(oldest[0][1], timezone.utc) if oldest else None
