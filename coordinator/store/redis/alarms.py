"""Network alarm states in Redis (store/protocols/alarms.py): a hash per alarm
(revision, incident, doc) and a set per incident of its alarms, both written by one
script so that a save is atomic across instances. Key names: keys.py."""

from __future__ import annotations

from ...alarms.decisions import AlarmState
from .connection import RedisConnection, reachable

# KEYS: alarm hash. ARGV: revision, incident id ('' none), doc, member, the incident sets'
# key prefix. 1 saved, 0 the stored revision is not revision-1. The alarm leaves the set of
# the incident it named before and joins its new one's.
_SAVE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'revision') or '0')
if current ~= tonumber(ARGV[1]) - 1 then return 0 end
local before = redis.call('HGET', KEYS[1], 'incident') or ''
if before ~= '' and before ~= ARGV[2] then redis.call('SREM', ARGV[5] .. before, ARGV[4]) end
if ARGV[2] ~= '' then redis.call('SADD', ARGV[5] .. ARGV[2], ARGV[4]) end
redis.call('HSET', KEYS[1], 'revision', ARGV[1], 'incident', ARGV[2], 'doc', ARGV[3])
return 1
"""


class RedisAlarms(RedisConnection):
    def _alarm_scripts(self) -> None:
        self._save_alarm = self._r.register_script(_SAVE)

    async def get_alarm(self, source: str, key: str) -> AlarmState | None:
        async with reachable():
            doc = await self._r.hget(self.keys.alarm(source, key), "doc")
        return AlarmState.model_validate_json(doc) if doc else None

    async def save_alarm(self, alarm: AlarmState) -> bool:
        async with reachable():
            saved = await self._save_alarm(
                keys=[self.keys.alarm(alarm.source, alarm.key)],
                args=[alarm.revision, alarm.incident_id or "", alarm.model_dump_json(), _member(alarm),
                      self.keys.incident_alarms("")])
        return bool(saved)

    async def incident_alarms(self, incident_id: str) -> list[AlarmState]:
        async with reachable():
            members = sorted(await self._r.smembers(self.keys.incident_alarms(incident_id)))
            if not members:
                return []
            async with self._r.pipeline(transaction=False) as pipe:
                for member in members:
                    source, _, key = member.partition("\x00")
                    pipe.hget(self.keys.alarm(source, key), "doc")
                docs = await pipe.execute()
        found = [AlarmState.model_validate_json(d) for d in docs if d]
        return sorted((a for a in found if a.incident_id == incident_id), key=lambda a: (a.fired_at, a.source, a.key))


def _member(alarm: AlarmState) -> str:
    return f"{alarm.source}\x00{alarm.key}"
