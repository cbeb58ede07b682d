"""The instance registry and reload announcements in SQLite (several processes may share
the file: every read here goes to the file, nothing is cached)."""

from __future__ import annotations

from datetime import datetime

from ..protocols.instances import FORGET_SECONDS, RELOADS_KEPT, Instance, ReloadOutcome, ReloadRequest
from .connection import SqliteConnection

INSTANCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, seen_at REAL NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reload_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reload_outcomes (
    request_id TEXT NOT NULL, instance TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (request_id, instance)
) WITHOUT ROWID;
"""


class SqliteInstances(SqliteConnection):
    async def beat(self, instance: Instance) -> None:
        seen = instance.seen_at.timestamp()
        async with self._write:
            await self._db.execute("INSERT OR REPLACE INTO instances VALUES (?, ?, ?)",
                                   (instance.id, seen, instance.model_dump_json()))
            await self._db.execute("DELETE FROM instances WHERE seen_at < ?", (seen - FORGET_SECONDS,))
            await self._db.commit()

    async def leave(self, instance_id: str) -> None:
        async with self._write:
            await self._db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
            await self._db.commit()

    async def instances(self, seen_since: datetime) -> list[Instance]:
        rows = await self._all("SELECT doc FROM instances WHERE seen_at >= ? ORDER BY id", (seen_since.timestamp(),))
        return [Instance.model_validate_json(r[0]) for r in rows]

    async def announce_reload(self, request_id: str, by: str, at: datetime) -> ReloadRequest:
        async with self._write:
            # The seq is the row's: assigned under SQLite's write lock, so in commit order.
            cur = await self._db.execute("INSERT INTO reload_requests (id, doc) VALUES (?, '')", (request_id,))
            seq = int(cur.lastrowid or 0)
            request = ReloadRequest(id=request_id, seq=seq, by=by, at=at)
            await self._db.execute("UPDATE reload_requests SET doc = ? WHERE seq = ?", (request.model_dump_json(), seq))
            await self._db.execute(
                "DELETE FROM reload_outcomes WHERE request_id IN (SELECT id FROM reload_requests WHERE seq <= ?)",
                (seq - RELOADS_KEPT,))
            await self._db.execute("DELETE FROM reload_requests WHERE seq <= ?", (seq - RELOADS_KEPT,))
            await self._db.commit()
        return request

    async def reload_requests(self, after_seq: int) -> list[ReloadRequest]:
        rows = await self._all("SELECT doc FROM reload_requests WHERE seq > ? ORDER BY seq", (after_seq,))
        return [ReloadRequest.model_validate_json(r[0]) for r in rows]

    async def last_reload_seq(self) -> int:
        row = await self._one("SELECT MAX(seq) FROM reload_requests")
        return int(row[0] or 0) if row else 0

    async def record_reload_outcome(self, outcome: ReloadOutcome) -> None:
        async with self._write:
            await self._db.execute("INSERT OR REPLACE INTO reload_outcomes VALUES (?, ?, ?)",
                                   (outcome.request_id, outcome.instance, outcome.model_dump_json()))
            await self._db.commit()

    async def reload_outcomes(self, request_id: str) -> list[ReloadOutcome]:
        rows = await self._all("SELECT doc FROM reload_outcomes WHERE request_id = ? ORDER BY instance", (request_id,))
        return [ReloadOutcome.model_validate_json(r[0]) for r in rows]
