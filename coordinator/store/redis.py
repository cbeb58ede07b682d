"""The shared store: Redis, for several coordinator instances. Every check-then-write is
one Lua script, so it is atomic across instances. Key names come from keys.py."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Sequence

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import Conflict, IncidentNotFound, StoreError
from ..models import (
    DELIVERY_RANK,
    Ack,
    Channel,
    Complaint,
    Delivery,
    DeliveryKey,
    DeliveryStatus,
    Incident,
    Surge,
    TimelineEvent,
    bucket_start,
)
from .base import MEDIA, Added, CountKind, Moved, StatusUpdate, ack_id, ack_key, claimed, medium_of, related_to
from .access import RedisAccess
from .drill_runs import RedisDrillRuns
from .stats import RedisStats, redis_stat_args
from .keys import RedisKeys

_DAY = 86400
# Each phone's SMS index (sms_sent_to) keeps its newest messages for a month.
SMS_INDEX_KEEP = 64
SMS_INDEX_TTL = 31 * _DAY
# A bucket's fields in its day hash: the count, the repeats, the regulator's.
_COUNT_SUFFIX: dict[str, str] = {"all": "", "repeat": ":r", "regulator": ":g"}

# KEYS: streams set, complaint counter. ARGV[1]: repeat window (s); then 12 per complaint:
# complaint key, json, bucket key 1, stream 1, bucket key 2, stream 2, bucket start,
# subscriber key ('' for none), received at (epoch s), '1' if from the regulator channel,
# statistics hash and field ('' for a drill; store/stats.py), summed over the batch
# first: one HINCRBY per field instead of one per complaint.
# Returns per complaint 0 known, 1 new, 2 new and a repeat.
_ADD_COMPLAINTS = """
local window = tonumber(ARGV[1])
local out = {}
local stats = {}
local function tally(key, field)
  local fields = stats[key]
  if not fields then fields = {}; stats[key] = fields end
  fields[field] = (fields[field] or 0) + 1
end
for i = 2, #ARGV, 12 do
  if redis.call('SET', ARGV[i], ARGV[i+1], 'NX') then
    local result = 1
    if ARGV[i+7] ~= '' then
      local at = tonumber(ARGV[i+8])
      local last = redis.call('GET', ARGV[i+7])
      if last and math.abs(tonumber(last) - at) <= window then result = 2 end
      if not last or tonumber(last) < at then
        redis.call('SET', ARGV[i+7], ARGV[i+8], 'EX', math.floor(window) + 86400)
      end
    end
    redis.call('HINCRBY', ARGV[i+2], ARGV[i+6], 1)
    redis.call('HINCRBY', ARGV[i+4], ARGV[i+6], 1)
    if result == 2 then
      redis.call('HINCRBY', ARGV[i+2], ARGV[i+6] .. ':r', 1)
      redis.call('HINCRBY', ARGV[i+4], ARGV[i+6] .. ':r', 1)
    end
    if ARGV[i+9] == '1' then
      redis.call('HINCRBY', ARGV[i+2], ARGV[i+6] .. ':g', 1)
      redis.call('HINCRBY', ARGV[i+4], ARGV[i+6] .. ':g', 1)
    end
    if ARGV[i+10] ~= '' then
      tally(ARGV[i+10], ARGV[i+11])
      if result == 2 then tally(ARGV[i+10], ARGV[i+11] .. '|r') end
    end
    redis.call('SADD', KEYS[1], ARGV[i+3], ARGV[i+5])
    redis.call('INCR', KEYS[2])
    out[#out+1] = result
  else
    out[#out+1] = 0
  end
end
for key, fields in pairs(stats) do
  for field, n in pairs(fields) do redis.call('HINCRBY', key, field, n) end
end
return out
"""

# KEYS: the incident's acks hash, its timeline. ARGV: ack id, ack json, timeline event
# json ('' for none). 1 if the ack was new (and its event appended), 0 if known.
_RECORD_ACK = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[3]) end
return 1
"""

# KEYS: state hash. ARGV: version, doc. 1 saved, 0 the stored version is not version-1.
_SAVE_STATE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[1]) - 1 then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'doc', ARGV[2])
return 1
"""

# KEYS: open-surge key, incident key, incidents zset, timeline key, the key group's set
# of open incidents, then the open-surge keys of related incidents (base.related_to).
# ARGV: id, json, opened_at score, first event json, has surge key ('1'/'0'), any open
# incident of the group is related ('1'/'0'). Returns the id of the incident to use:
# the new one, or the oldest open one on the key or a related key.
_OPEN_INCIDENT = """
if ARGV[5] == '1' then
  local found, found_at = nil, nil
  local function consider(id)
    if not id then return end
    local at = tonumber(redis.call('ZSCORE', KEYS[5], id) or '0')
    if not found or at < found_at then found, found_at = id, at end
  end
  consider(redis.call('GET', KEYS[1]))
  for i = 6, #KEYS do consider(redis.call('GET', KEYS[i])) end
  if ARGV[6] == '1' then
    local oldest = redis.call('ZRANGE', KEYS[5], 0, 0)
    consider(oldest[1])
  end
  if found then return found end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return redis.error_reply('incident id exists') end
if ARGV[5] == '1' then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[4])
return ARGV[1]
"""

# KEYS: incident key, open-surge key, the key group's open set. ARGV: json, is open
# ('1'/'0'), id, has surge key, new revision. 0 unknown, -1 stale revision, 1 saved.
_SAVE_INCIDENT = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if cjson.decode(current)['revision'] ~= tonumber(ARGV[5]) - 1 then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[4] == '1' and ARGV[2] == '0' then
  if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
  redis.call('ZREM', KEYS[3], ARGV[3])
end
return 1
"""

# KEYS: steps hash. ARGV: step key, owner, now, lease until. 1 claimed (or renewed by
# its owner), 0 not.
_CLAIM_STEP = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local claim = cjson.decode(current)
  if claim['done'] == 1 then return 0 end
  if claim['lease_until'] > tonumber(ARGV[3]) and claim['owner'] ~= ARGV[2] then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1],
  cjson.encode({owner = ARGV[2], done = 0, lease_until = tonumber(ARGV[4])}))
return 1
"""

# KEYS: steps hash. ARGV: step key.
_FINISH_STEP = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local claim = cjson.decode(current)
claim['done'] = 1
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(claim))
return 1
"""

# KEYS: delivery hash, incident's delivery set, outbox. ARGV: rank, json, delivery id, due.
_ADD_DELIVERY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rank', ARGV[1], 'doc', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return 1
"""

# KEYS: the outboxes to claim from. ARGV: now, lease end, limit, the delivery hashes'
# key prefix. The oldest due ids across them, their score moved to the
# lease's end so that no one else takes them before it lapses; each delivery's first
# claim time is kept in its hash.
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
  ids[#ids+1] = due[i][2]
end
return ids
"""

# ARGV[1]: the key prefix of the phones' SMS index (keys.sms_to), ARGV[2]: the
# unsettled-SMS set, ARGV[3]: how many SMS each phone's index keeps, ARGV[4]: its TTL,
# ARGV[5]: the counter that orders the index (keys.sms_order); then 12 per update: delivery hash key, its outbox, provider key ('' for none),
# delivery id, rank, status, at, provider id, error, finish ('1'/'0'), at as epoch
# seconds, '1' for an SMS. The rule of base.apply_update: the status only moves forward;
# a provider id is taken when moving or when none is known. An SMS moving to 'sent'
# enters the unsettled set, moving on leaves it; an accepted SMS (finish, sent or
# delivered) enters its phone's index. Returns per update the stored doc ('' if
# unknown) and 1 if moved. A phone's index is ordered by a counter (the order the
# acceptances were recorded, across instances), not by clocks that may agree to the second.
_UPDATE_DELIVERIES = """
local out = {}
for i = 6, #ARGV, 12 do
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
    if ARGV[i+9] == '1' then redis.call('ZREM', ARGV[i+1], ARGV[i+3]) end
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



# Connections to Redis per instance (COORDINATOR_REDIS_MAX_CONNECTIONS): enough for every
# send slot and intake request in flight at once, each call holding one only briefly.
DEFAULT_CONNECTIONS = 64


@asynccontextmanager
async def _reachable() -> AsyncIterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise StoreError(f"Redis store unavailable: {exc}") from exc


class RedisStore(RedisDrillRuns, RedisStats, RedisAccess):
    # Several instances share it: anything may have changed since the last read.
    single_process = False

    def __init__(self, client: aioredis.Redis, bucket_seconds: int, prefix: str = "coord:") -> None:
        # decode_responses=True: every answer is str, which the client's stubs cannot express.
        self._r: Any = client
        self.bucket_seconds = bucket_seconds
        self.keys = RedisKeys(prefix)
        self._add_complaints = client.register_script(_ADD_COMPLAINTS)
        self._open_incident = client.register_script(_OPEN_INCIDENT)
        self._save_incident = client.register_script(_SAVE_INCIDENT)
        self._add_delivery = client.register_script(_ADD_DELIVERY)
        self._claim = client.register_script(_CLAIM)
        self._claim_step = client.register_script(_CLAIM_STEP)
        self._save_state = client.register_script(_SAVE_STATE)
        self._finish_step = client.register_script(_FINISH_STEP)
        self._update_deliveries = client.register_script(_UPDATE_DELIVERIES)
        self._record_ack = client.register_script(_RECORD_ACK)
        self._split_outbox = client.register_script(_SPLIT_OUTBOX)
        self._drill_scripts()

    @classmethod
    async def open(cls, url: str, bucket_seconds: int, prefix: str = "coord:", *,
                   max_connections: int = DEFAULT_CONNECTIONS, pool_timeout: float = 20.0) -> "RedisStore":
        """A blocking pool of `max_connections`: past it a call waits up to
        `pool_timeout` for a connection instead of failing at once (redis-py's default
        pool raises "Too many connections", which a burst of clients turned into 503s)."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout, decode_responses=True)
        client = aioredis.Redis.from_pool(pool)
        store = cls(client, bucket_seconds, prefix)
        try:
            await store.ping()
            async with _reachable():
                await store._split_outbox(keys=[store.keys.shared_outbox()],
                                          args=[f"{m}={store.keys.outbox(m)}" for m in MEDIA])
                await store._index_open_groups()
        except BaseException:
            await store.close()
            raise
        return store

    async def _index_open_groups(self) -> None:
        """Stores written before the open-group sets: put the incidents open now in them,
        once (repeating it is harmless, so two instances starting at once may both)."""
        if await self._r.exists(self.keys.open_group_index()):
            return
        for incident in await self.list_incidents(open_only=True):
            if incident.surge_key is not None:
                group, _, _ = related_to(incident.surge_key)
                await self._r.zadd(self.keys.open_group(group), {incident.id: incident.opened_at.timestamp()})
        await self._r.set(self.keys.open_group_index(), "1")

    async def close(self) -> None:
        await self._r.aclose()

    async def volatility(self) -> str | None:
        """Why Redis may lose what it acknowledged when its process dies (no append-only
        file and no replica connected), or None. Raises StoreError when Redis will not
        say (a managed Redis may refuse INFO): the caller decides."""
        try:
            async with _reachable():
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

    async def ping(self) -> None:
        async with _reachable():
            await self._r.ping()

    async def get_or_create_secret(self, name: str, candidate: str) -> str:
        async with _reachable():
            await self._r.set(self.keys.secret(name), candidate, nx=True)
            return str(await self._r.get(self.keys.secret(name)))

    # --- complaints ----------------------------------------------------------------

    async def add_complaints(
        self, complaints: Sequence[Complaint], repeat_window: timedelta = timedelta(days=7)
    ) -> list[Added]:
        if not complaints:
            return []
        args: list[str | int | float] = [repeat_window.total_seconds()]
        for c in complaints:
            bucket = bucket_start(c.received_at, self.bucket_seconds)
            day = bucket // _DAY
            own, wide = c.streams()
            args += [
                self.keys.complaint(c.id),
                c.model_dump_json(),
                self.keys.buckets(own, day),
                own,
                self.keys.buckets(wide, day),
                wide,
                bucket,
                self.keys.subscriber(c.subscriber_hash) if c.subscriber_hash else "",
                c.received_at.timestamp(),
                "1" if c.channel == Channel.regulator else "0",
                *redis_stat_args(self.keys.complaint_stats, c),
            ]
        async with _reachable():
            result = await self._add_complaints(
                keys=[self.keys.streams(), self.keys.complaint_count()], args=args
            )
        return [Added(x > 0, x == 2) for x in result]

    async def get_complaint(self, complaint_id: str) -> Complaint | None:
        async with _reachable():
            doc = await self._r.get(self.keys.complaint(complaint_id))
        return Complaint.model_validate_json(doc) if doc else None

    async def count_complaints(self) -> int:
        async with _reachable():
            return int(await self._r.get(self.keys.complaint_count()) or 0)

    async def _day_fields(self, stream: str, start: datetime, end: datetime) -> tuple[dict[str, str], int, float]:
        first = bucket_start(start, self.bucket_seconds)
        last = end.timestamp()
        async with _reachable():
            async with self._r.pipeline(transaction=False) as pipe:
                for day in range(first // _DAY, int(last) // _DAY + 1):
                    pipe.hgetall(self.keys.buckets(stream, day))
                results = await pipe.execute()
        return {k: v for part in results for k, v in part.items()}, first, last

    async def bucket_counts(
        self, stream: str, start: datetime, end: datetime, kind: CountKind = "all"
    ) -> dict[int, int]:
        fields, first, last = await self._day_fields(stream, start, end)
        suffix = _COUNT_SUFFIX[kind]
        counts = {
            int(b[: len(b) - len(suffix)]): int(n)
            for b, n in fields.items()
            if (b.endswith(suffix) if suffix else ":" not in b)
        }
        return {b: counts[b] for b in sorted(counts) if first <= b < last}

    async def bucket_counts_many(
        self, streams: Sequence[str], start: datetime, end: datetime, kind: CountKind = "all"
    ) -> dict[str, dict[int, int]]:
        # The buckets' fields by name (HMGET), not whole day hashes: the monitor asks for
        # the two or three latest buckets of dozens of streams after every intake batch.
        first = bucket_start(start, self.bucket_seconds)
        last = end.timestamp()
        suffix = _COUNT_SUFFIX[kind]
        days: dict[int, list[int]] = {}
        for b in range(first, int(last) + 1, self.bucket_seconds):
            if b < last:
                days.setdefault(b // _DAY, []).append(b)
        names = list(dict.fromkeys(streams))
        async with _reachable():
            async with self._r.pipeline(transaction=False) as pipe:
                for stream in names:
                    for day, buckets in days.items():
                        pipe.hmget(self.keys.buckets(stream, day), [f"{b}{suffix}" for b in buckets])
                results = iter(await pipe.execute())
        found: dict[str, dict[int, int]] = {}
        for stream in names:
            counts: dict[int, int] = {}
            for buckets in days.values():
                for b, n in zip(buckets, next(results)):
                    if n is not None and int(n) > 0:
                        counts[b] = int(n)
            found[stream] = counts
        return found

    async def stream_names(self) -> list[str]:
        async with _reachable():
            return sorted(await self._r.smembers(self.keys.streams()))

    async def load_stream_state(self, stream: str) -> tuple[dict[str, Any] | None, int]:
        async with _reachable():
            version, doc = await self._r.hmget(self.keys.stream_state(stream), ["version", "doc"])
        return (json.loads(doc), int(version)) if doc else (None, 0)

    async def save_stream_state(self, stream: str, state: dict[str, Any], version: int) -> bool:
        async with _reachable():
            saved = await self._save_state(keys=[self.keys.stream_state(stream)], args=[version, json.dumps(state)])
        return bool(saved)

    async def open_stream_surge(self, surge: Surge) -> bool:
        async with _reachable():
            return bool(await self._r.set(self.keys.stream_surge(surge.key), surge.model_dump_json(), nx=True))

    async def stream_surge(self, stream: str) -> Surge | None:
        async with _reachable():
            doc = await self._r.get(self.keys.stream_surge(stream))
        return Surge.model_validate_json(doc) if doc else None

    async def close_stream_surge(self, stream: str) -> None:
        async with _reachable():
            await self._r.delete(self.keys.stream_surge(stream))

    # --- incidents -----------------------------------------------------------------

    async def open_incident(
        self, incident: Incident, event: TimelineEvent, *, related: bool = False
    ) -> tuple[Incident, bool]:
        has_surge = incident.surge_key is not None
        group, others, any_of_group = related_to(incident.surge_key or "")
        if not related:
            others, any_of_group = [], False
        try:
            async with _reachable():
                got = await self._open_incident(
                    keys=[
                        self.keys.open_surge(incident.surge_key or ""),
                        self.keys.incident(incident.id),
                        self.keys.incidents(),
                        self.keys.timeline(incident.id),
                        self.keys.open_group(group),
                        *(self.keys.open_surge(k) for k in others),
                    ],
                    args=[
                        incident.id,
                        incident.model_dump_json(),
                        incident.opened_at.timestamp(),
                        event.model_dump_json(),
                        "1" if has_surge else "0",
                        "1" if any_of_group else "0",
                    ],
                )
        except ResponseError as exc:
            raise StoreError(f"incident id {incident.id} already exists") from exc
        if got == incident.id:
            return incident, True
        return await self.get_incident(got), False

    async def get_incident(self, incident_id: str) -> Incident:
        async with _reachable():
            doc = await self._r.get(self.keys.incident(incident_id))
        if doc is None:
            raise IncidentNotFound(incident_id)
        return Incident.model_validate_json(doc)

    async def save_incident(self, incident: Incident) -> None:
        async with _reachable():
            saved = await self._save_incident(
                keys=[self.keys.incident(incident.id), self.keys.open_surge(incident.surge_key or ""),
                      self.keys.open_group(related_to(incident.surge_key or "")[0])],
                args=[
                    incident.model_dump_json(),
                    "1" if incident.is_open else "0",
                    incident.id,
                    "1" if incident.surge_key is not None else "0",
                    incident.revision,
                ],
            )
        if saved == 0:
            raise IncidentNotFound(incident.id)
        if saved == -1:
            raise Conflict(f"incident {incident.id}")

    async def list_incidents(
        self, *, open_only: bool | None = None, drill: bool | None = None, playbook: str | None = None
    ) -> list[Incident]:
        async with _reachable():
            ids = await self._r.zrevrange(self.keys.incidents(), 0, -1)
            docs = await self._r.mget([self.keys.incident(i) for i in ids]) if ids else []
        found = [Incident.model_validate_json(d) for d in docs if d]
        found.sort(key=lambda i: (i.opened_at, i.id), reverse=True)
        return [
            i
            for i in found
            if (open_only is None or i.is_open == open_only)
            and (drill is None or i.drill == drill)
            and (playbook is None or i.playbook == playbook)
        ]

    async def append_timeline(self, incident_id: str, event: TimelineEvent) -> None:
        async with _reachable():
            if not await self._r.exists(self.keys.incident(incident_id)):
                raise IncidentNotFound(incident_id)
            await self._r.rpush(self.keys.timeline(incident_id), event.model_dump_json())

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        async with _reachable():
            docs = await self._r.lrange(self.keys.timeline(incident_id), 0, -1)
        return [TimelineEvent.model_validate_json(d) for d in docs]

    # --- steps and surges ---------------------------------------------------------

    async def claim_step(self, incident_id: str, key: str, owner: str, now: datetime, lease_seconds: float) -> bool:
        async with _reachable():
            got = await self._claim_step(
                keys=[self.keys.steps(incident_id)],
                args=[key, owner, now.timestamp(), now.timestamp() + lease_seconds],
            )
        return bool(got)

    async def finish_step(self, incident_id: str, key: str) -> None:
        async with _reachable():
            await self._finish_step(keys=[self.keys.steps(incident_id)], args=[key])

    async def finished_steps(self, incident_id: str) -> set[str]:
        async with _reachable():
            claims = await self._r.hgetall(self.keys.steps(incident_id))
        return {k for k, v in claims.items() if json.loads(v)["done"] == 1}

    async def record_surge(self, surge: Surge) -> None:
        async with _reachable():
            await self._r.zadd(self.keys.surges(), {surge.model_dump_json(): surge.detected_at.timestamp()})

    async def surges(self, *, key: str | None = None, since: datetime | None = None) -> list[Surge]:
        async with _reachable():
            docs = await self._r.zrangebyscore(self.keys.surges(), since.timestamp() if since else "-inf", "+inf")
        found = (Surge.model_validate_json(d) for d in docs)
        return [s for s in found if key is None or s.key == key]

    # --- deliveries and acks -------------------------------------------------------

    async def add_delivery(self, delivery: Delivery, due: datetime | None = None) -> bool:
        did = delivery.key.as_id()
        async with _reachable():
            added = await self._add_delivery(
                keys=[self.keys.delivery(did), self.keys.deliveries(delivery.key.incident_id),
                      self.keys.outbox(delivery.key.medium)],
                args=[DELIVERY_RANK[delivery.status], delivery.model_dump_json(), did,
                      (due or delivery.updated_at).timestamp()],
            )
        return bool(added)

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> int:
        async with _reachable():
            async with self._r.pipeline(transaction=False) as pipe:
                for d in deliveries:
                    did = d.key.as_id()
                    await self._add_delivery(
                        keys=[self.keys.delivery(did), self.keys.deliveries(d.key.incident_id),
                              self.keys.outbox(d.key.medium)],
                        args=[DELIVERY_RANK[d.status], d.model_dump_json(), did, d.updated_at.timestamp()],
                        client=pipe,
                    )
                results = await pipe.execute()
        return sum(int(r) for r in results)

    async def claim_deliveries(
        self, owner: str, now: datetime, lease_seconds: float, limit: int, medium: str | None = None
    ) -> list[Delivery]:
        outboxes = [self.keys.outbox(m) for m in (MEDIA if medium is None else (medium,))]
        async with _reachable():
            ids = await self._claim(keys=outboxes, args=[now.timestamp(), now.timestamp() + lease_seconds, limit,
                                                         self.keys.delivery("")])
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
        async with _reachable():
            async with self._r.pipeline(transaction=False) as pipe:
                for medium, ids in by_medium.items():
                    for i in range(0, len(ids), 1000):
                        pipe.zadd(self.keys.outbox(medium), {d: until.timestamp() for d in ids[i : i + 1000]}, xx=True)
                await pipe.execute()

    async def _docs(self, ids: Sequence[str]) -> list[Delivery]:
        if not ids:
            return []
        async with _reachable():
            async with self._r.pipeline(transaction=False) as pipe:
                for did in ids:
                    pipe.hget(self.keys.delivery(did), "doc")
                docs = await pipe.execute()
        return [Delivery.model_validate_json(d) for d in docs if d]

    async def sms_sent_to(self, phone: str, limit: int = 20) -> list[Delivery]:
        async with _reachable():
            ids = await self._r.zrevrange(self.keys.sms_to(phone), 0, limit - 1)
        return await self._docs(ids)

    async def unsettled_sms(self, before: datetime, limit: int) -> list[Delivery]:
        async with _reachable():
            ids = await self._r.zrangebyscore(self.keys.unsettled(), "-inf", before.timestamp(), start=0, num=limit)
        return await self._docs(ids)

    async def defer_unsettled(self, keys: Sequence[DeliveryKey], until: datetime | None) -> None:
        if not keys:
            return
        ids = [k.as_id() for k in keys]
        async with _reachable():
            if until is None:
                await self._r.zrem(self.keys.unsettled(), *ids)
            else:
                await self._r.zadd(self.keys.unsettled(), {d: until.timestamp() for d in ids}, xx=True)

    async def finish_delivery(self, key: DeliveryKey) -> None:
        async with _reachable():
            await self._r.zrem(self.keys.outbox(key.medium), key.as_id())

    async def retry_delivery(self, key: DeliveryKey, due: datetime, *, attempts: int, error: str) -> None:
        current = await self.get_delivery(key)
        if current is None:
            raise StoreError(f"no delivery {key.as_id()}")
        doc = current.model_copy(update={"attempts": attempts, "error": error}).model_dump_json()
        async with _reachable():
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.delivery(key.as_id()), "doc", doc)
                pipe.zadd(self.keys.outbox(key.medium), {key.as_id(): due.timestamp()})
                await pipe.execute()

    async def delivery_by_provider(self, provider_id: str) -> Delivery | None:
        async with _reachable():
            did = await self._r.get(self.keys.provider(provider_id))
            doc = await self._r.hget(self.keys.delivery(did), "doc") if did else None
        return Delivery.model_validate_json(doc) if doc else None

    async def outbox_size(self) -> int:
        async with _reachable():
            async with self._r.pipeline(transaction=False) as pipe:
                for medium in MEDIA:
                    pipe.zcard(self.keys.outbox(medium))
                return sum(int(n) for n in await pipe.execute())

    async def get_delivery(self, key: DeliveryKey) -> Delivery | None:
        async with _reachable():
            doc = await self._r.hget(self.keys.delivery(key.as_id()), "doc")
        return Delivery.model_validate_json(doc) if doc else None

    async def update_delivery(
        self,
        key: DeliveryKey,
        status: DeliveryStatus,
        *,
        at: datetime,
        provider_id: str | None = None,
        error: str | None = None,
    ) -> Delivery:
        [(found, _)] = await self.update_deliveries([StatusUpdate(key, status, at, provider_id, error)])
        if found is None:
            raise StoreError(f"no delivery {key.as_id()}")
        return found

    async def update_deliveries(self, updates: Sequence[StatusUpdate]) -> list[Moved]:
        if not updates:
            return []
        async with _reachable():
            by_sid = [u.provider_id for u in updates if u.key is None and u.provider_id]
            # Provider ids given in this batch with their delivery count as known too.
            owners = {u.provider_id: u.key.as_id() for u in updates if u.key is not None and u.provider_id}
            if by_sid:
                found = await self._r.mget([self.keys.provider(s) for s in by_sid])
                owners |= {sid: did for sid, did in zip(by_sid, found) if did}
            args: list[Any] = [self.keys.sms_to(""), self.keys.unsettled(), SMS_INDEX_KEEP, SMS_INDEX_TTL,
                               self.keys.sms_order()]
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
        async with _reachable():
            ids = sorted(await self._r.smembers(self.keys.deliveries(incident_id)))
        return await self._docs(ids)

    async def set_opt_out(self, phone: str, opted_out: bool) -> None:
        async with _reachable():
            if opted_out:
                await self._r.sadd(self.keys.opt_outs(), phone)
            else:
                await self._r.srem(self.keys.opt_outs(), phone)

    async def opted_out(self) -> set[str]:
        async with _reachable():
            return set(await self._r.smembers(self.keys.opt_outs()))

    async def record_ack(self, ack: Ack, event: TimelineEvent | None = None) -> bool:
        async with _reachable():
            return bool(await self._record_ack(keys=[self.keys.acks(ack.incident_id), self.keys.timeline(ack.incident_id)],
                                               args=[ack_id(ack), ack.model_dump_json(),
                                                     event.model_dump_json() if event is not None else ""]))

    async def acks(self, incident_id: str) -> list[Ack]:
        async with _reachable():
            docs = await self._r.hvals(self.keys.acks(incident_id))
        return sorted((Ack.model_validate_json(d) for d in docs), key=lambda a: (a.at, a.person_id))

    async def acked_versions(self, incident_id: str, person_id: str, versions: Sequence[int]) -> set[int]:
        if not versions:
            return set()
        async with _reachable():
            found = await self._r.hmget(self.keys.acks(incident_id), [ack_key(person_id, v) for v in versions])
        return {v for v, doc in zip(versions, found) if doc}
