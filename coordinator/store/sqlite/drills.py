"""Drill runs, schedule cursors and scheduler leases in SQLite."""

from __future__ import annotations

from datetime import datetime

from ...errors import Conflict
from ...models import DrillRun
from .connection import SqliteConnection

DRILL_SCHEMA = """
CREATE TABLE IF NOT EXISTS drill_runs (
    id TEXT PRIMARY KEY, drill_id TEXT NOT NULL, started_at REAL NOT NULL, revision INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS drill_runs_drill ON drill_runs (drill_id, started_at);
CREATE TABLE IF NOT EXISTS drill_cursors (drill_id TEXT PRIMARY KEY, next_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until REAL NOT NULL);
"""


class SqliteDrills(SqliteConnection):
    async def create_drill_run(self, run: DrillRun) -> bool:
        async with self._write:
            cur = await self._db.execute(
                "INSERT OR IGNORE INTO drill_runs VALUES (?, ?, ?, ?, ?)",
                (run.id, run.drill_id, run.started_at.timestamp(), run.revision, run.model_dump_json()),
            )
            await self._db.commit()
        return bool(cur.rowcount == 1)

    async def save_drill_run(self, run: DrillRun) -> None:
        async with self._write:
            cur = await self._db.execute(
                "UPDATE drill_runs SET revision = ?, doc = ? WHERE id = ? AND revision = ?",
                (run.revision, run.model_dump_json(), run.id, run.revision - 1),
            )
            await self._db.commit()
        if cur.rowcount != 1:
            raise Conflict(f"drill run {run.id} changed meanwhile")

    async def get_drill_run(self, run_id: str) -> DrillRun | None:
        row = await self._one("SELECT doc FROM drill_runs WHERE id = ?", (run_id,))
        return DrillRun.model_validate_json(row[0]) if row else None

    async def drill_runs(self, drill_id: str | None = None) -> list[DrillRun]:
        if drill_id is None:
            rows = await self._all("SELECT doc FROM drill_runs ORDER BY started_at DESC, id DESC")
        else:
            rows = await self._all(
                "SELECT doc FROM drill_runs WHERE drill_id = ? ORDER BY started_at DESC, id DESC", (drill_id,)
            )
        return [DrillRun.model_validate_json(r[0]) for r in rows]

    async def drill_cursor(self, drill_id: str) -> datetime | None:
        row = await self._one("SELECT next_at FROM drill_cursors WHERE drill_id = ?", (drill_id,))
        return datetime.fromisoformat(row[0]) if row else None

    async def move_drill_cursor(self, drill_id: str, expected: datetime | None, new: datetime) -> bool:
        async with self._write:
            if expected is None:
                cur = await self._db.execute(
                    "INSERT OR IGNORE INTO drill_cursors VALUES (?, ?)", (drill_id, new.isoformat())
                )
            else:
                cur = await self._db.execute(
                    "UPDATE drill_cursors SET next_at = ? WHERE drill_id = ? AND next_at = ?",
                    (new.isoformat(), drill_id, expected.isoformat()),
                )
            await self._db.commit()
        return bool(cur.rowcount == 1)

    async def acquire_lease(self, name: str, owner: str, now: datetime, seconds: float) -> bool:
        async with self._write:
            cur = await self._db.execute(
                "INSERT INTO leases VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
                " SET owner = excluded.owner, until = excluded.until"
                " WHERE leases.owner = excluded.owner OR leases.until <= ?",
                (name, owner, now.timestamp() + seconds, now.timestamp()),
            )
            await self._db.commit()
        return bool(cur.rowcount == 1)
