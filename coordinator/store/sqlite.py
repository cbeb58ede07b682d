"""The embedded default store: one SQLite file in WAL mode, for one process.

Writes go through one connection under one lock, so a check-then-insert (dedupe) is never
interleaved with another coroutine's. Reads go through a second connection, each query
run to its end in one call: a read sees one committed snapshot, never a write of the
other connection half done (a cursor left open on the writing connection while another
coroutine wrote through it returned partial results)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import stat
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

import aiosqlite

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
from .base import ACCEPTED, Added, CountKind, Moved, StatusUpdate, ack_id, ack_key, apply_update, claimed, medium_of, related_to
from .access import ACCESS_SCHEMA, SqliteAccess
from .drill_runs import DRILL_SCHEMA, SqliteDrillRuns
from .stats import HOUR, STATS_SCHEMA, STATS_UPSERT, SqliteStats, StatTally

SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS complaints (
    id TEXT PRIMARY KEY, received_at REAL NOT NULL, doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS buckets (
    stream TEXT NOT NULL, bucket INTEGER NOT NULL,
    count INTEGER NOT NULL, repeat INTEGER NOT NULL, regulator INTEGER NOT NULL,
    PRIMARY KEY (stream, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscribers (hash TEXT PRIMARY KEY, last_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_state (stream TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS opt_outs (phone TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS stream_surges (stream TEXT PRIMARY KEY, doc TEXT NOT NULL);
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
CREATE TABLE IF NOT EXISTS surges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, detected_at REAL NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS surges_key ON surges (key, detected_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, rank INTEGER NOT NULL, provider_id TEXT,
    pending INTEGER NOT NULL, due REAL NOT NULL, owner TEXT, doc TEXT NOT NULL, medium TEXT NOT NULL DEFAULT '',
    claimed_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_incident ON deliveries (incident_id);
CREATE INDEX IF NOT EXISTS deliveries_outbox ON deliveries (due) WHERE pending = 1;
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_provider ON deliveries (provider_id) WHERE provider_id IS NOT NULL;
-- The SMS a provider accepted, by phone, in the order they were recorded: the index an
-- SMS reply is matched through.
CREATE TABLE IF NOT EXISTS sms_sent (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, phone TEXT NOT NULL, delivery_id TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS sms_sent_phone ON sms_sent (phone, seq);
CREATE TABLE IF NOT EXISTS acks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, incident_id TEXT NOT NULL, ack_id TEXT NOT NULL,
    doc TEXT NOT NULL, UNIQUE (incident_id, ack_id)
);
"""

_IN_CHUNK = 500  # ids per `IN (...)`, well under SQLite's variable limit
_INCIDENT_CACHE = 2048  # parsed incidents kept (by revision); more are read again
# The buckets table's column for each kind of count.
_COUNT_COLUMN: dict[str, str] = {"all": "count", "repeat": "repeat", "regulator": "regulator"}

_ADD_DELIVERY = (
    "INSERT OR IGNORE INTO deliveries (id, incident_id, rank, provider_id, pending, due, owner, doc, medium)"
    " VALUES (?, ?, ?, ?, 1, ?, NULL, ?, ?)"
)


log = logging.getLogger(__name__)


def _private_file(path: str | Path) -> None:
    """The file holds complaints (hashed subscribers, but texts), staff contacts and, unless
    the operator passes them as settings, the service's secrets: create it readable by
    its owner only (SQLite gives its -wal and -shm files the same mode). An older file
    that others may read is left as it is, with a warning that says how to mend it."""
    if str(path) == ":memory:":
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("the store file %s can be read by other users (mode %o): run chmod 600 %s",
                        path, stat.S_IMODE(mode), path)
    except OSError:
        return  # sqlite3 names the problem when it opens the path
    else:
        os.close(fd)
    folder = os.path.dirname(os.path.abspath(path))
    mode = os.stat(folder).st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:  # sticky (/tmp): others cannot replace it
        log.warning("the store's folder %s can be written by any user: they could replace the store", folder)


async def _migrate_deliveries(db: aiosqlite.Connection) -> None:
    """Files from before the per-medium outbox get the `medium` column, filled in;
    files from before the first-claim time get its column (empty: never claimed, or
    claimed by a version that did not say); files from before status reconciliation the
    `settle_at` column (empty: not looked up)."""
    async with db.execute("PRAGMA table_info(deliveries)") as cur:
        columns = {row[1] for row in await cur.fetchall()}
    if "claimed_at" not in columns:
        await db.execute("ALTER TABLE deliveries ADD COLUMN claimed_at REAL")
    if "medium" not in columns:
        await db.execute("ALTER TABLE deliveries ADD COLUMN medium TEXT NOT NULL DEFAULT ''")
        async with db.execute("SELECT id FROM deliveries") as cur:
            ids = [row[0] for row in await cur.fetchall()]
        await db.executemany("UPDATE deliveries SET medium = ? WHERE id = ?",
                             [(medium_of(i), i) for i in ids])
    if "settle_at" not in columns:
        await db.execute("ALTER TABLE deliveries ADD COLUMN settle_at REAL")
    await db.execute("CREATE INDEX IF NOT EXISTS deliveries_outbox_medium ON deliveries (medium, due) WHERE pending = 1")
    await db.execute("CREATE INDEX IF NOT EXISTS deliveries_unsettled ON deliveries (settle_at) WHERE settle_at IS NOT NULL")


def _row(d: Delivery, due: datetime) -> tuple[Any, ...]:
    return (d.key.as_id(), d.key.incident_id, DELIVERY_RANK[d.status], d.provider_id, due.timestamp(),
            d.model_dump_json(), d.key.medium)


class SqliteStore(SqliteDrillRuns, SqliteStats, SqliteAccess):
    # One process owns the file: what it wrote last is what is stored.
    single_process = True

    def __init__(self, db: aiosqlite.Connection, reader: aiosqlite.Connection, bucket_seconds: int) -> None:
        self._db = db
        self._reader = reader
        self.bucket_seconds = bucket_seconds
        self._write = asyncio.Lock()
        self._incidents: dict[str, Incident] = {}

    @classmethod
    async def open(cls, path: str | Path, bucket_seconds: int) -> "SqliteStore":
        try:
            _private_file(path)
            db = await aiosqlite.connect(str(path))
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.executescript(SCHEMA + DRILL_SCHEMA + STATS_SCHEMA + ACCESS_SCHEMA)
            await _migrate_deliveries(db)
            await db.commit()
            reader = await aiosqlite.connect(str(path))
            await reader.execute("PRAGMA busy_timeout=5000")
            await reader.execute("PRAGMA query_only=1")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {path}: {exc}") from exc
        return cls(db, reader, bucket_seconds)

    async def close(self) -> None:
        await self._reader.close()
        await self._db.close()

    async def ping(self) -> None:
        try:
            await self._reader.execute_fetchall("SELECT 1")
        except (sqlite3.Error, ValueError) as exc:
            raise StoreError(f"SQLite store unavailable: {exc}") from exc

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read on the reading connection, executed and fetched in one call."""
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreError(f"reading the SQLite store failed: {exc}") from exc

    async def get_or_create_secret(self, name: str, candidate: str) -> str:
        async with self._write:
            await self._db.execute("INSERT OR IGNORE INTO secrets VALUES (?, ?)", (name, candidate))
            await self._db.commit()
        row = await self._one("SELECT value FROM secrets WHERE name = ?", (name,))
        return str(row[0])

    # --- complaints ----------------------------------------------------------------

    async def add_complaints(
        self, complaints: Sequence[Complaint], repeat_window: timedelta = timedelta(days=7)
    ) -> list[Added]:
        async with self._write:
            ids = [c.id for c in complaints]
            known = await self._existing("SELECT id FROM complaints WHERE id IN ({})", ids)
            hashes = sorted({c.subscriber_hash for c in complaints if c.subscriber_hash})
            last_seen: dict[str, float] = dict(
                await self._all_in("SELECT hash, last_at FROM subscribers WHERE hash IN ({})", hashes)
            )
            out: list[Added] = []
            rows_in: list[tuple[str, float, str]] = []
            counts: Counter[tuple[str, int]] = Counter()
            repeats: Counter[tuple[str, int]] = Counter()
            regulator: Counter[tuple[str, int]] = Counter()
            tally = StatTally()
            window = repeat_window.total_seconds()
            for c in complaints:
                if c.id in known:
                    out.append(Added(False, False))
                    continue
                known.add(c.id)
                at = c.received_at.timestamp()
                second = int(at)
                repeat = False
                if c.subscriber_hash:
                    previous = last_seen.get(c.subscriber_hash)
                    repeat = previous is not None and abs(at - previous) <= window
                    last_seen[c.subscriber_hash] = max(at, previous or at)
                out.append(Added(True, repeat))
                tally.add(c, repeat, second - second % HOUR)
                rows_in.append((c.id, at, c.model_dump_json()))
                bucket = second - second % self.bucket_seconds  # bucket_start, from the timestamp at hand
                for stream in c.streams():
                    counts[(stream, bucket)] += 1
                    repeats[(stream, bucket)] += repeat
                    regulator[(stream, bucket)] += c.channel == Channel.regulator
            if rows_in:
                try:
                    await self._db.executemany("INSERT INTO complaints VALUES (?, ?, ?)", rows_in)
                    await self._db.executemany(
                        "INSERT INTO buckets VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream, bucket) DO UPDATE"
                        " SET count = count + excluded.count, repeat = repeat + excluded.repeat,"
                        " regulator = regulator + excluded.regulator",
                        [(s, b, n, repeats[(s, b)], regulator[(s, b)]) for (s, b), n in counts.items()],
                    )
                    await self._db.executemany(STATS_UPSERT, tally.rows())
                    await self._db.executemany(
                        "INSERT INTO subscribers VALUES (?, ?) ON CONFLICT (hash) DO UPDATE"
                        " SET last_at = max(last_at, excluded.last_at)",
                        [(h, last_seen[h]) for h in hashes if h in last_seen],
                    )
                    await self._db.commit()
                except sqlite3.Error as exc:
                    await self._db.rollback()
                    raise StoreError(f"storing complaints failed: {exc}") from exc
            return out

    async def _all_in(self, sql: str, values: Sequence[Any], after: Sequence[Any] = ()) -> list[Any]:
        """`sql` with one `IN ({})`, run over `values` in chunks; `after`: the parameters
        that follow the IN list."""
        rows: list[Any] = []
        for i in range(0, len(values), _IN_CHUNK):
            chunk = values[i : i + _IN_CHUNK]
            rows += await self._all(sql.format(",".join("?" * len(chunk))), (*chunk, *after))
        return rows

    async def _existing(self, sql: str, values: Sequence[Any]) -> set[Any]:
        return {r[0] for r in await self._all_in(sql, values)}

    async def get_complaint(self, complaint_id: str) -> Complaint | None:
        row = await self._one("SELECT doc FROM complaints WHERE id = ?", (complaint_id,))
        return Complaint.model_validate_json(row[0]) if row else None

    async def count_complaints(self) -> int:
        row = await self._one("SELECT COUNT(*) FROM complaints")
        return int(row[0])

    async def bucket_counts(
        self, stream: str, start: datetime, end: datetime, kind: CountKind = "all"
    ) -> dict[int, int]:
        return (await self.bucket_counts_many([stream], start, end, kind))[stream]

    async def bucket_counts_many(
        self, streams: Sequence[str], start: datetime, end: datetime, kind: CountKind = "all"
    ) -> dict[str, dict[int, int]]:
        column = _COUNT_COLUMN[kind]
        found: dict[str, dict[int, int]] = {stream: {} for stream in streams}
        rows = await self._all_in(
            f"SELECT stream, bucket, {column} FROM buckets WHERE stream IN ({{}})"
            f" AND bucket >= ? AND bucket < ? AND {column} > 0 ORDER BY stream, bucket",
            sorted(found), (bucket_start(start, self.bucket_seconds), end.timestamp()),
        )
        for stream, b, n in rows:
            found[stream][int(b)] = int(n)
        return found

    async def stream_names(self) -> list[str]:
        return [r[0] for r in await self._all("SELECT DISTINCT stream FROM buckets ORDER BY stream")]

    async def load_stream_state(self, stream: str) -> tuple[dict[str, Any] | None, int]:
        row = await self._one("SELECT version, doc FROM stream_state WHERE stream = ?", (stream,))
        return (json.loads(row[1]), int(row[0])) if row else (None, 0)

    async def save_stream_state(self, stream: str, state: dict[str, Any], version: int) -> bool:
        async with self._write:
            if version == 1:
                cur = await self._db.execute(
                    "INSERT OR IGNORE INTO stream_state VALUES (?, 1, ?)", (stream, json.dumps(state))
                )
            else:
                cur = await self._db.execute(
                    "UPDATE stream_state SET version = ?, doc = ? WHERE stream = ? AND version = ?",
                    (version, json.dumps(state), stream, version - 1),
                )
            await self._db.commit()
        return cur.rowcount == 1

    async def open_stream_surge(self, surge: Surge) -> bool:
        async with self._write:
            cur = await self._db.execute(
                "INSERT OR IGNORE INTO stream_surges VALUES (?, ?)", (surge.key, surge.model_dump_json())
            )
            await self._db.commit()
        return cur.rowcount == 1

    async def stream_surge(self, stream: str) -> Surge | None:
        row = await self._one("SELECT doc FROM stream_surges WHERE stream = ?", (stream,))
        return Surge.model_validate_json(row[0]) if row else None

    async def close_stream_surge(self, stream: str) -> None:
        async with self._write:
            await self._db.execute("DELETE FROM stream_surges WHERE stream = ?", (stream,))
            await self._db.commit()

    # --- incidents -----------------------------------------------------------------

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

    # --- steps and surges ---------------------------------------------------------

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

    async def record_surge(self, surge: Surge) -> None:
        async with self._write:
            await self._db.execute(
                "INSERT INTO surges (key, detected_at, doc) VALUES (?, ?, ?)",
                (surge.key, surge.detected_at.timestamp(), surge.model_dump_json()),
            )
            await self._db.commit()

    async def surges(self, *, key: str | None = None, since: datetime | None = None) -> list[Surge]:
        sql = "SELECT doc FROM surges WHERE detected_at >= ?"
        params: list[Any] = [since.timestamp() if since else 0.0]
        if key is not None:
            sql += " AND key = ?"
            params.append(key)
        rows = await self._all(sql + " ORDER BY detected_at, seq", params)
        return [Surge.model_validate_json(r[0]) for r in rows]

    # --- deliveries and acks -------------------------------------------------------

    async def add_delivery(self, delivery: Delivery, due: datetime | None = None) -> bool:
        async with self._write:
            cur = await self._db.execute(_ADD_DELIVERY, _row(delivery, due or delivery.updated_at))
            await self._db.commit()
        return cur.rowcount == 1

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> int:
        rows = [_row(d, d.updated_at) for d in deliveries]
        async with self._write:
            before = self._db.total_changes
            await self._db.executemany(_ADD_DELIVERY, rows)
            await self._db.commit()
            return self._db.total_changes - before

    async def claim_deliveries(
        self, owner: str, now: datetime, lease_seconds: float, limit: int, medium: str | None = None
    ) -> list[Delivery]:
        which = "" if medium is None else " AND medium = ?"
        params: list[Any] = [owner, now.timestamp() + lease_seconds, now.timestamp(), now.timestamp()]
        params += [medium, limit] if medium is not None else [limit]
        async with self._write:
            rows = await self._db.execute_fetchall(
                "UPDATE deliveries SET owner = ?, due = ?, claimed_at = COALESCE(claimed_at, ?) WHERE id IN"
                f" (SELECT id FROM deliveries WHERE pending = 1 AND due <= ?{which} ORDER BY due LIMIT ?)"
                " RETURNING doc, claimed_at",
                params,
            )
            await self._db.commit()
        return [claimed(r[0], r[1]) for r in rows]

    async def renew_claims(self, owner: str, keys: Sequence[DeliveryKey], until: datetime) -> None:
        async with self._write:
            await self._db.executemany("UPDATE deliveries SET due = ? WHERE id = ? AND pending = 1 AND owner = ?",
                                       [(until.timestamp(), k.as_id(), owner) for k in keys])
            await self._db.commit()

    async def finish_delivery(self, key: DeliveryKey) -> None:
        async with self._write:
            await self._db.execute("UPDATE deliveries SET pending = 0, owner = NULL WHERE id = ?", (key.as_id(),))
            await self._db.commit()

    async def retry_delivery(self, key: DeliveryKey, due: datetime, *, attempts: int, error: str) -> None:
        async with self._write:
            current = await self.get_delivery(key)
            if current is None:
                raise StoreError(f"no delivery {key.as_id()}")
            doc = current.model_copy(update={"attempts": attempts, "error": error}).model_dump_json()
            await self._db.execute(
                "UPDATE deliveries SET pending = 1, due = ?, owner = NULL, doc = ? WHERE id = ?",
                (due.timestamp(), doc, key.as_id()),
            )
            await self._db.commit()

    async def delivery_by_provider(self, provider_id: str) -> Delivery | None:
        row = await self._one("SELECT doc FROM deliveries WHERE provider_id = ?", (provider_id,))
        return Delivery.model_validate_json(row[0]) if row else None

    async def outbox_size(self) -> int:
        row = await self._one("SELECT COUNT(*) FROM deliveries WHERE pending = 1")
        return int(row[0])

    async def get_delivery(self, key: DeliveryKey) -> Delivery | None:
        row = await self._one("SELECT doc FROM deliveries WHERE id = ?", (key.as_id(),))
        return Delivery.model_validate_json(row[0]) if row else None

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
        async with self._write:
            by_sid = [u.provider_id for u in updates if u.key is None and u.provider_id]
            owner = {u.provider_id: u.key.as_id() for u in updates if u.key is not None and u.provider_id}
            owner |= dict(await self._all_in("SELECT provider_id, id FROM deliveries WHERE provider_id IN ({})", by_sid))
            ids = [u.key.as_id() if u.key is not None else owner.get(u.provider_id or "") for u in updates]
            wanted = sorted({i for i in ids if i is not None})
            stored = {i: Delivery.model_validate_json(doc)
                      for i, doc in await self._all_in("SELECT id, doc FROM deliveries WHERE id IN ({})", wanted)}
            changed: set[str] = set()
            finished: set[str] = set()
            settle: dict[str, float | None] = {}  # the unsettled index: check time, None to leave it
            accepted: dict[str, str] = {}  # SMS accepted: id -> phone
            answers: list[Moved] = []
            for did, update in zip(ids, updates):
                current = stored.get(did) if did is not None else None
                if current is None or did is None:
                    answers.append(Moved(None, False))
                    continue
                after, moved = apply_update(current, update)
                if after is not current:
                    stored[did] = after
                    changed.add(did)
                if update.finish:
                    finished.add(did)
                if after.key.medium == "sms":
                    if moved:
                        settle[did] = update.at.timestamp() if after.status == DeliveryStatus.sent else None
                    if update.finish and after.status in ACCEPTED:
                        accepted.setdefault(did, after.address)
                answers.append(Moved(after, moved))
            await self._db.executemany(
                "UPDATE deliveries SET rank = ?, provider_id = ?, doc = ? WHERE id = ?",
                [(DELIVERY_RANK[stored[i].status], stored[i].provider_id, stored[i].model_dump_json(), i)
                 for i in sorted(changed)])
            await self._db.executemany("UPDATE deliveries SET pending = 0, owner = NULL WHERE id = ?",
                                       [(i,) for i in sorted(finished)])
            await self._db.executemany("UPDATE deliveries SET settle_at = ? WHERE id = ?",
                                       [(at, i) for i, at in settle.items()])
            await self._db.executemany("INSERT OR IGNORE INTO sms_sent (phone, delivery_id) VALUES (?, ?)",
                                       [(phone, i) for i, phone in accepted.items()])
            await self._db.commit()
        return answers

    async def sms_sent_to(self, phone: str, limit: int = 20) -> list[Delivery]:
        rows = await self._all(
            "SELECT d.doc FROM sms_sent s JOIN deliveries d ON d.id = s.delivery_id WHERE s.phone = ?"
            " ORDER BY s.seq DESC LIMIT ?", (phone, limit))
        return [Delivery.model_validate_json(r[0]) for r in rows]

    async def unsettled_sms(self, before: datetime, limit: int) -> list[Delivery]:
        rows = await self._all(
            "SELECT doc FROM deliveries WHERE settle_at IS NOT NULL AND settle_at <= ? ORDER BY settle_at LIMIT ?",
            (before.timestamp(), limit))
        return [Delivery.model_validate_json(r[0]) for r in rows]

    async def defer_unsettled(self, keys: Sequence[DeliveryKey], until: datetime | None) -> None:
        async with self._write:
            await self._db.executemany(
                "UPDATE deliveries SET settle_at = ? WHERE id = ? AND settle_at IS NOT NULL",
                [(until.timestamp() if until else None, k.as_id()) for k in keys])
            await self._db.commit()

    async def deliveries(self, incident_id: str) -> list[Delivery]:
        rows = await self._all("SELECT doc FROM deliveries WHERE incident_id = ? ORDER BY id", (incident_id,))
        return [Delivery.model_validate_json(r[0]) for r in rows]

    async def set_opt_out(self, phone: str, opted_out: bool) -> None:
        async with self._write:
            sql = "INSERT OR IGNORE INTO opt_outs VALUES (?)" if opted_out else "DELETE FROM opt_outs WHERE phone = ?"
            await self._db.execute(sql, (phone,))
            await self._db.commit()

    async def opted_out(self) -> set[str]:
        return {r[0] for r in await self._all("SELECT phone FROM opt_outs")}

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
