"""Complaints in Redis: each complaint a key, bucket counts in one hash per stream and
UTC day, detector state and open surges per stream, recorded surges in one sorted set,
and the hourly statistics in one hash per UTC day, all counted by one Lua script."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Sequence

from ...models import Channel, Complaint, Surge, bucket_start
from ..records import Added, CountKind, StatRow
from ..rules import hour_floor
from .connection import RedisConnection, reachable

_DAY = 86400
# A bucket's fields in its day hash: the count, the repeats, the regulator's.
_COUNT_SUFFIX: dict[str, str] = {"all": "", "repeat": ":r", "regulator": ":g"}
# Separates the parts of a statistics field; regions are lowercase ids, categories and
# channels come from the catalog, none of them holds it.
SEP = "|"

# KEYS: streams set, complaint counter. ARGV[1]: repeat window (s); then 12 per complaint:
# complaint key, json, bucket key 1, stream 1, bucket key 2, stream 2, bucket start,
# subscriber key ('' for none), received at (epoch s), '1' if from the regulator channel,
# statistics hash and field ('' for a drill; `stat_args`), summed over the batch
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

# KEYS: state hash. ARGV: version, doc. 1 saved, 0 the stored version is not version-1.
_SAVE_STATE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[1]) - 1 then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'doc', ARGV[2])
return 1
"""



def stat_args(stats_key: Any, complaint: Complaint) -> list[str]:
    """The two arguments the intake script takes per complaint: the hash of its UTC day
    and the field of its hour, category, region and channel ('' twice for a drill)."""
    if complaint.drill:
        return ["", ""]
    hour = hour_floor(complaint.received_at)
    field = SEP.join((str(hour), complaint.category, complaint.region, complaint.channel.value))
    return [stats_key(hour // _DAY), field]


class RedisComplaints(RedisConnection):
    def _complaint_scripts(self) -> None:
        self._add_complaints = self._r.register_script(_ADD_COMPLAINTS)
        self._save_state = self._r.register_script(_SAVE_STATE)

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
                *stat_args(self.keys.complaint_stats, c),
            ]
        # Confirmed by the replicas the store URL asks for before it counts as stored.
        result = await self._confirmed(self._add_complaints, [self.keys.streams(), self.keys.complaint_count()], args)
        return [Added(x > 0, x == 2) for x in result]

    async def get_complaint(self, complaint_id: str) -> Complaint | None:
        async with reachable():
            doc = await self._r.get(self.keys.complaint(complaint_id))
        return Complaint.model_validate_json(doc) if doc else None

    async def count_complaints(self) -> int:
        async with reachable():
            return int(await self._r.get(self.keys.complaint_count()) or 0)

    async def _day_fields(self, stream: str, start: datetime, end: datetime) -> tuple[dict[str, str], int, float]:
        first = bucket_start(start, self.bucket_seconds)
        last = end.timestamp()
        async with reachable():
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
        async with reachable():
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
        async with reachable():
            return sorted(await self._r.smembers(self.keys.streams()))

    async def load_stream_state(self, stream: str) -> tuple[dict[str, Any] | None, int]:
        async with reachable():
            version, doc = await self._r.hmget(self.keys.stream_state(stream), ["version", "doc"])
        return (json.loads(doc), int(version)) if doc else (None, 0)

    async def save_stream_state(self, stream: str, state: dict[str, Any], version: int) -> bool:
        async with reachable():
            saved = await self._save_state(keys=[self.keys.stream_state(stream)], args=[version, json.dumps(state)])
        return bool(saved)

    async def open_stream_surge(self, surge: Surge) -> bool:
        async with reachable():
            return bool(await self._r.set(self.keys.stream_surge(surge.key), surge.model_dump_json(), nx=True))

    async def stream_surge(self, stream: str) -> Surge | None:
        async with reachable():
            doc = await self._r.get(self.keys.stream_surge(stream))
        return Surge.model_validate_json(doc) if doc else None

    async def close_stream_surge(self, stream: str) -> None:
        async with reachable():
            await self._r.delete(self.keys.stream_surge(stream))

    async def record_surge(self, surge: Surge) -> None:
        async with reachable():
            await self._r.zadd(self.keys.surges(), {surge.model_dump_json(): surge.detected_at.timestamp()})

    async def surges(self, *, key: str | None = None, since: datetime | None = None) -> list[Surge]:
        async with reachable():
            docs = await self._r.zrangebyscore(self.keys.surges(), since.timestamp() if since else "-inf", "+inf")
        found = (Surge.model_validate_json(d) for d in docs)
        return [s for s in found if key is None or s.key == key]

    async def complaint_stats(self, start: datetime, end: datetime) -> list[StatRow]:
        first, last = hour_floor(start), end.timestamp()
        days = range(first // _DAY, int(last) // _DAY + 1)
        async with self._r.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(self.keys.complaint_stats(day))
            parts = await pipe.execute()
        counts: dict[tuple[int, str, str, str], list[int]] = {}
        for part in parts:
            for field, value in part.items():
                hour, category, region, channel, *repeat = field.split(SEP)
                if not first <= int(hour) < last:
                    continue
                entry = counts.setdefault((int(hour), category, region, channel), [0, 0])
                entry[1 if repeat else 0] += int(value)
        return [StatRow(*key, n, r) for key, (n, r) in sorted(counts.items())]
