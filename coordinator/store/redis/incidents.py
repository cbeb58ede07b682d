"""Incidents in Redis: each incident a key, indexed by opening time, the open one per
surge key and per surge-key group, timelines as lists, steps and acks as hashes. Every
check-then-write is one Lua script, so it is atomic across instances."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Sequence

from redis.exceptions import ResponseError

from ...errors import Conflict, IncidentNotFound, StoreError
from ...models import Ack, Incident, TimelineEvent
from ..rules import ack_id, ack_key, related_to
from .connection import RedisConnection, reachable

# KEYS: the incident's acks hash, its timeline. ARGV: ack id, ack json, timeline event
# json ('' for none). 1 if the ack was new (and its event appended), 0 if known.
_RECORD_ACK = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[3]) end
return 1
"""

# KEYS: open-surge key, incident key, incidents zset, timeline key, the key group's set
# of open incidents, then the open-surge keys of related incidents (rules.related_to).
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


_PARSED_KEPT = 2048  # parsed incident documents kept; past that the cache starts over


class RedisIncidents(RedisConnection):
    # (hash, length) of an incident document -> the incident parsed from it, set up by
    # RedisStore: GET /metrics and every tick list all incidents, and parsing each
    # document (its playbook snapshot validated) was most of that.
    _parsed_docs: dict[tuple[int, int], Incident]

    def _parsed(self, doc: str) -> Incident:
        """The incident `doc` holds, parsed once per text (incidents are frozen records)."""
        key = (hash(doc), len(doc))
        parsed = self._parsed_docs.get(key)
        if parsed is None:
            parsed = Incident.model_validate_json(doc)
            if len(self._parsed_docs) >= _PARSED_KEPT:
                self._parsed_docs.clear()
            self._parsed_docs[key] = parsed
        return parsed

    def _incident_scripts(self) -> None:
        self._open_incident = self._r.register_script(_OPEN_INCIDENT)
        self._save_incident = self._r.register_script(_SAVE_INCIDENT)
        self._claim_step = self._r.register_script(_CLAIM_STEP)
        self._finish_step = self._r.register_script(_FINISH_STEP)
        self._record_ack = self._r.register_script(_RECORD_ACK)

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

    async def open_incident(
        self, incident: Incident, event: TimelineEvent, *, related: bool = False
    ) -> tuple[Incident, bool]:
        has_surge = incident.surge_key is not None
        group, others, any_of_group = related_to(incident.surge_key or "")
        if not related:
            others, any_of_group = [], False
        try:
            async with reachable():
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
        async with reachable():
            doc = await self._r.get(self.keys.incident(incident_id))
        if doc is None:
            raise IncidentNotFound(incident_id)
        return self._parsed(doc)

    async def save_incident(self, incident: Incident) -> None:
        async with reachable():
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
        async with reachable():
            ids = await self._r.zrevrange(self.keys.incidents(), 0, -1)
            docs = await self._r.mget([self.keys.incident(i) for i in ids]) if ids else []
        found = [self._parsed(d) for d in docs if d]
        found.sort(key=lambda i: (i.opened_at, i.id), reverse=True)
        return [
            i
            for i in found
            if (open_only is None or i.is_open == open_only)
            and (drill is None or i.drill == drill)
            and (playbook is None or i.playbook == playbook)
        ]

    async def append_timeline(self, incident_id: str, event: TimelineEvent) -> None:
        async with reachable():
            if not await self._r.exists(self.keys.incident(incident_id)):
                raise IncidentNotFound(incident_id)
            await self._r.rpush(self.keys.timeline(incident_id), event.model_dump_json())

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        async with reachable():
            docs = await self._r.lrange(self.keys.timeline(incident_id), 0, -1)
        return [TimelineEvent.model_validate_json(d) for d in docs]

    async def claim_step(self, incident_id: str, key: str, owner: str, now: datetime, lease_seconds: float) -> bool:
        async with reachable():
            got = await self._claim_step(
                keys=[self.keys.steps(incident_id)],
                args=[key, owner, now.timestamp(), now.timestamp() + lease_seconds],
            )
        return bool(got)

    async def finish_step(self, incident_id: str, key: str) -> None:
        async with reachable():
            await self._finish_step(keys=[self.keys.steps(incident_id)], args=[key])

    async def finished_steps(self, incident_id: str) -> set[str]:
        async with reachable():
            claims = await self._r.hgetall(self.keys.steps(incident_id))
        return {k for k, v in claims.items() if json.loads(v)["done"] == 1}

    async def record_ack(self, ack: Ack, event: TimelineEvent | None = None) -> bool:
        async with reachable():
            return bool(await self._record_ack(keys=[self.keys.acks(ack.incident_id), self.keys.timeline(ack.incident_id)],
                                               args=[ack_id(ack), ack.model_dump_json(),
                                                     event.model_dump_json() if event is not None else ""]))

    async def acks(self, incident_id: str) -> list[Ack]:
        async with reachable():
            docs = await self._r.hvals(self.keys.acks(incident_id))
        return sorted((Ack.model_validate_json(d) for d in docs), key=lambda a: (a.at, a.person_id))

    async def acked_versions(self, incident_id: str, person_id: str, versions: Sequence[int]) -> set[int]:
        if not versions:
            return set()
        async with reachable():
            found = await self._r.hmget(self.keys.acks(incident_id), [ack_key(person_id, v) for v in versions])
        return {v for v, doc in zip(versions, found) if doc}
