"""Drill runs, schedule cursors and scheduler leases in Redis."""

from __future__ import annotations

from datetime import datetime

from ...errors import Conflict
from ...models import DrillRun
from .connection import RedisConnection

# KEYS: run key, index. ARGV: revision, doc, started_at, id. 1 created, 0 it exists.
_CREATE_RUN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'revision', ARGV[1], 'doc', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""

# KEYS: run key. ARGV: revision, doc. 1 saved, 0 the stored revision is not revision-1.
_SAVE_RUN = """
local current = redis.call('HGET', KEYS[1], 'revision')
if not current or tonumber(current) ~= tonumber(ARGV[1]) - 1 then return 0 end
redis.call('HSET', KEYS[1], 'revision', ARGV[1], 'doc', ARGV[2])
return 1
"""

# KEYS: cursor key. ARGV: expected ('' for none), new. 1 moved, 0 someone moved it first.
_MOVE_CURSOR = """
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lease key. ARGV: owner, now, until. 1 held by owner now, 0 someone else holds it.
_LEASE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
local untl = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if owner and owner ~= ARGV[1] and untl > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'until', ARGV[3])
return 1
"""


class RedisDrills(RedisConnection):
    def _drill_scripts(self) -> None:
        self._create_run = self._r.register_script(_CREATE_RUN)
        self._save_run = self._r.register_script(_SAVE_RUN)
        self._move_cursor = self._r.register_script(_MOVE_CURSOR)
        self._lease = self._r.register_script(_LEASE)

    def _run_key(self, run_id: str) -> str:
        return f"{self.keys.prefix}drill-run:{run_id}"

    def _runs_index(self, drill_id: str | None) -> str:
        """Sorted set of run ids by start time: all runs, or one drill's."""
        return f"{self.keys.prefix}drill-runs:{drill_id or '*'}"

    async def create_drill_run(self, run: DrillRun) -> bool:
        doc = run.model_dump_json()
        created = await self._create_run(
            keys=[self._run_key(run.id), self._runs_index(run.drill_id)],
            args=[run.revision, doc, run.started_at.timestamp(), run.id],
        )
        if created:
            await self._r.zadd(self._runs_index(None), {run.id: run.started_at.timestamp()})
        return bool(created)

    async def save_drill_run(self, run: DrillRun) -> None:
        if not await self._save_run(keys=[self._run_key(run.id)], args=[run.revision, run.model_dump_json()]):
            raise Conflict(f"drill run {run.id} changed meanwhile")

    async def get_drill_run(self, run_id: str) -> DrillRun | None:
        doc = await self._r.hget(self._run_key(run_id), "doc")
        return DrillRun.model_validate_json(doc) if doc else None

    async def drill_runs(self, drill_id: str | None = None) -> list[DrillRun]:
        ids = await self._r.zrevrange(self._runs_index(drill_id), 0, -1)
        if not ids:
            return []
        pipe = self._r.pipeline(transaction=False)
        for run_id in ids:
            pipe.hget(self._run_key(run_id), "doc")
        docs = await pipe.execute()
        runs = [DrillRun.model_validate_json(d) for d in docs if d]
        return sorted(runs, key=lambda r: (r.started_at, r.id), reverse=True)

    async def drill_cursor(self, drill_id: str) -> datetime | None:
        value = await self._r.get(f"{self.keys.prefix}drill-cursor:{drill_id}")
        return datetime.fromisoformat(value) if value else None

    async def move_drill_cursor(self, drill_id: str, expected: datetime | None, new: datetime) -> bool:
        moved = await self._move_cursor(
            keys=[f"{self.keys.prefix}drill-cursor:{drill_id}"],
            args=[expected.isoformat() if expected else "", new.isoformat()],
        )
        return bool(moved)

    async def acquire_lease(self, name: str, owner: str, now: datetime, seconds: float) -> bool:
        held = await self._lease(
            keys=[f"{self.keys.prefix}lease:{name}"], args=[owner, now.timestamp(), now.timestamp() + seconds]
        )
        return bool(held)
