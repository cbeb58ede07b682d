"""Network alarm states in SQLite (store/protocols/alarms.py)."""

from __future__ import annotations

import sqlite3

from ...alarms.decisions import AlarmState
from ...errors import StoreError
from .connection import SqliteConnection

ALARM_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    source TEXT NOT NULL, key TEXT NOT NULL, revision INTEGER NOT NULL, incident_id TEXT, fired_at REAL NOT NULL,
    doc TEXT NOT NULL, PRIMARY KEY (source, key)
);
CREATE INDEX IF NOT EXISTS alarms_incident ON alarms (incident_id);
"""


class SqliteAlarms(SqliteConnection):
    async def get_alarm(self, source: str, key: str) -> AlarmState | None:
        row = await self._one("SELECT doc FROM alarms WHERE source = ? AND key = ?", (source, key))
        return AlarmState.model_validate_json(row[0]) if row else None

    async def save_alarm(self, alarm: AlarmState) -> bool:
        values = (alarm.revision, alarm.incident_id, alarm.fired_at.timestamp(), alarm.model_dump_json())
        try:
            async with self._write:
                if alarm.revision == 1:
                    cur = await self._db.execute(
                        "INSERT OR IGNORE INTO alarms (revision, incident_id, fired_at, doc, source, key)"
                        " VALUES (?, ?, ?, ?, ?, ?)", (*values, alarm.source, alarm.key))
                else:
                    cur = await self._db.execute(
                        "UPDATE alarms SET revision = ?, incident_id = ?, fired_at = ?, doc = ?"
                        " WHERE source = ? AND key = ? AND revision = ?",
                        (*values, alarm.source, alarm.key, alarm.revision - 1))
                await self._db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"writing the SQLite store failed: {exc}") from exc
        return bool(cur.rowcount == 1)

    async def incident_alarms(self, incident_id: str) -> list[AlarmState]:
        rows = await self._all("SELECT doc FROM alarms WHERE incident_id = ? ORDER BY fired_at, source, key",
                               (incident_id,))
        return [AlarmState.model_validate_json(r[0]) for r in rows]
