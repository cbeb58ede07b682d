"""Incidents in SQLite: the incidents (one open per surge key, enforced by a unique
index), their timelines, the timed steps workers claim, and the acknowledgements."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Sequence

from ...errors import Conflict, IncidentNotFound, StoreError
from ...models import Ack, Incident, TimelineEvent
from ..rules import ack_id, ack_key, related_to
from .connection import SqliteConnection

INCIDENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY, surge_key TEXT, is_open INTEGER NOT NULL, opened_at REAL NOT NULL,
    revision INTEGER NOT NULL, doc TEXT NOT NULL
);
-- One open incident per surge key, enforced by the database itself.
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open_surge ON incidents (surge_key)
    WHERE is_open = 1 AND surge_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS timeline (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, incident_id TEXT NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_incident ON timeline (incident_id, seq);
CREATE TABLE IF NOT EXISTS steps (
    incident_id TEXT NOT NULL, key TEXT NOT NULL, owner TEXT NOT NULL, done INTEGER NOT NULL,
    lease_until REAL NOT NULL, PRIMARY KEY (incident_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, incident_id TEXT NOT NULL, ack_id TEXT NOT NULL,
    doc TEXT NOT NULL, UNIQUE (incident_id, ack_id)
);
"""

_INCIDENT_CACHE = 2048  # parsed incidents kept (by revision); more are read again


class SqliteIncidents(SqliteConnection):
    _incidents: dict[str, Incident]  # the parse cache of `_parsed`, set up by SqliteStore

    async def open_incident(
        self, incident: Incident, event: TimelineEvent, *, related: bool = False
    ) -> tuple[Incident, bool]:
        async with self._write:
            if related and incident.surge_key is not None:
                group, keys, any_of_group = related_to(incident.surge_key)
                sql = "SELECT id, revision, doc FROM incidents WHERE is_open = 1 AND (surge_key IN ({})"
                if any_of_group:
                    sql += f" OR substr(surge_key, 1, {len(group) + 1}) = ?"
                row = await self._one(
                    sql.format(",".join("?" * (len(keys) + 1))) + ") ORDER BY opened_at, id LIMIT 1",
                    (incident.surge_key, *keys, *([group + "/"] if any_of_group else [])),
                )
                if row is not None:
                    return self._parsed(*row), False
            try:
                await self._db.execute(
                    "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        incident.id,
                        incident.surge_key,
                        int(incident.is_open),
                        incident.opened_at.timestamp(),
                        incident.revision,
                        incident.model_dump_json(),
                    ),
                )
                await self._db.execute(
                    "INSERT INTO timeline (incident_id, doc) VALUES (?, ?)", (incident.id, event.model_dump_json())
                )
                await self._db.commit()
                return incident, True
            except sqlite3.IntegrityError:
                await self._db.rollback()
        row = await self._one(
            "SELECT id, revision, doc FROM incidents WHERE surge_key = ? AND is_open = 1", (incident.surge_key,)
        )
        if row is None:  # the id itself collided: a caller bug, not a race
            raise StoreError(f"incident id {incident.id} already exists")
        return self._parsed(*row), False

    def _parsed(self, incident_id: str, revision: int, doc: str) -> Incident:
        """The incident of a row, parsed once per revision: an incident's document holds
        every version's texts, and an ack storm reads the same two or three thousands of
        times a second (the models are frozen, so sharing them is safe)."""
        cached = self._incidents.get(incident_id)
        if cached is not None and cached.revision == revision:
            return cached
        if len(self._incidents) >= _INCIDENT_CACHE:
            self._incidents.clear()
        parsed = self._incidents[incident_id] = Incident.model_validate_json(doc)
        return parsed

    async def get_incident(self, incident_id: str) -> Incident:
        row = await self._one("SELECT id, revision, doc FROM incidents WHERE id = ?", (incident_id,))
        if row is None:
            raise IncidentNotFound(incident_id)
        return self._parsed(*row)

    async def save_incident(self, incident: Incident) -> None:
        async with self._write:
            cur = await self._db.execute(
                "UPDATE incidents SET is_open = ?, revision = ?, doc = ? WHERE id = ? AND revision = ?",
                (int(incident.is_open), incident.revision, incident.model_dump_json(), incident.id,
                 incident.revision - 1),
            )
            await self._db.commit()
        if cur.rowcount == 0:
            await self.get_incident(incident.id)  # raises IncidentNotFound
            raise Conflict(f"incident {incident.id}")

    async def list_incidents(
        self, *, open_only: bool | None = None, drill: bool | None = None, playbook: str | None = None
    ) -> list[Incident]:
        sql, params = "SELECT id, revision, doc FROM incidents", []
        if open_only is not None:
            sql += " WHERE is_open = ?"
            params.append(int(open_only))
        rows = await self._all(sql + " ORDER BY opened_at DESC, id DESC", params)
        found = (self._parsed(*r) for r in rows)
        return [
            i for i in found if (drill is None or i.drill == drill) and (playbook is None or i.playbook == playbook)
        ]

    async def append_timeline(self, incident_id: str, event: TimelineEvent) -> None:
        if await self._one("SELECT 1 FROM incidents WHERE id = ?", (incident_id,)) is None:
            raise IncidentNotFound(incident_id)
        async with self._write:
            await self._db.execute(
                "INSERT INTO timeline (incident_id, doc) VALUES (?, ?)", (incident_id, event.model_dump_json())
            )
            await self._db.commit()

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        rows = await self._all("SELECT doc FROM timeline WHERE incident_id = ? ORDER BY seq", (incident_id,))
        return [TimelineEvent.model_validate_json(r[0]) for r in rows]

    async def claim_step(self, incident_id: str, key: str, owner: str, now: datetime, lease_seconds: float) -> bool:
        until = now.timestamp() + lease_seconds
        async with self._write:
            cur = await self._db.execute(
                "INSERT INTO steps VALUES (?, ?, ?, 0, ?) ON CONFLICT (incident_id, key) DO UPDATE"
                " SET owner = excluded.owner, lease_until = excluded.lease_until"
                " WHERE steps.done = 0 AND (steps.lease_until <= ? OR steps.owner = excluded.owner)",
                (incident_id, key, owner, until, now.timestamp()),
            )
            await self._db.commit()
        return cur.rowcount == 1

    async def finish_step(self, incident_id: str, key: str) -> None:
        async with self._write:
            await self._db.execute("UPDATE steps SET done = 1 WHERE incident_id = ? AND key = ?", (incident_id, key))
            await self._db.commit()

    async def finished_steps(self, incident_id: str) -> set[str]:
        rows = await self._all("SELECT key FROM steps WHERE incident_id = ? AND done = 1", (incident_id,))
        return {r[0] for r in rows}

    async def record_ack(self, ack: Ack, event: TimelineEvent | None = None) -> bool:
        async with self._write:
            cur = await self._db.execute(
                "INSERT OR IGNORE INTO acks (incident_id, ack_id, doc) VALUES (?, ?, ?)",
                (ack.incident_id, ack_id(ack), ack.model_dump_json()),
            )
            new = cur.rowcount == 1
            if new and event is not None:
                await self._db.execute("INSERT INTO timeline (incident_id, doc) VALUES (?, ?)",
                                       (ack.incident_id, event.model_dump_json()))
            await self._db.commit()
        return new

    async def acks(self, incident_id: str) -> list[Ack]:
        rows = await self._all("SELECT doc FROM acks WHERE incident_id = ? ORDER BY seq", (incident_id,))
        return sorted((Ack.model_validate_json(r[0]) for r in rows), key=lambda a: (a.at, a.person_id))

    async def acked_versions(self, incident_id: str, person_id: str, versions: Sequence[int]) -> set[int]:
        wanted = {ack_key(person_id, v): v for v in versions}
        rows = await self._all_in("SELECT ack_id FROM acks WHERE ack_id IN ({}) AND incident_id = ?",
                                  sorted(wanted), (incident_id,))
        return {wanted[r[0]] for r in rows}
