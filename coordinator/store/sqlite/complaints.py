"""Complaints in SQLite: the complaints, their per-stream bucket counts, the subscribers
seen (for repeat flags), detector state, open and recorded surges, and the hourly
statistics `add_complaints` keeps up to date in the same transaction."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Sequence

from ...errors import StoreError
from ...models import Channel, Complaint, Surge, bucket_start
from ..records import Added, CountKind, StatRow
from ..rules import HOUR, hour_floor
from .connection import SqliteConnection

COMPLAINT_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS stream_surges (stream TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS surges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, detected_at REAL NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS surges_key ON surges (key, detected_at);
CREATE TABLE IF NOT EXISTS complaint_stats (
    hour INTEGER NOT NULL, category TEXT NOT NULL, region TEXT NOT NULL, channel TEXT NOT NULL,
    count INTEGER NOT NULL, repeat INTEGER NOT NULL,
    PRIMARY KEY (hour, category, region, channel)
) WITHOUT ROWID;
"""

STATS_UPSERT = (
    "INSERT INTO complaint_stats VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (hour, category, region, channel)"
    " DO UPDATE SET count = count + excluded.count, repeat = repeat + excluded.repeat"
)

# The buckets table's column for each kind of count.
_COUNT_COLUMN: dict[str, str] = {"all": "count", "repeat": "repeat", "regulator": "regulator"}


class StatTally:
    """One batch's statistics, gathered while the batch is stored and written in one go.
    Drill complaints are not counted."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, str, str, str]] = Counter()
        self.repeats: Counter[tuple[int, str, str, str]] = Counter()

    def add(self, complaint: Complaint, repeat: bool, hour: int | None = None) -> None:
        """Count `complaint`; `hour`: its hour_floor, when the caller has it already."""
        if complaint.drill:
            return
        key = (hour_floor(complaint.received_at) if hour is None else hour, complaint.category, complaint.region,
               complaint.channel.value)
        self.counts[key] += 1
        if repeat:
            self.repeats[key] += 1

    def rows(self) -> list[tuple[int, str, str, str, int, int]]:
        return [(*key, n, self.repeats[key]) for key, n in self.counts.items()]


class SqliteComplaints(SqliteConnection):
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

    async def complaint_stats(self, start: datetime, end: datetime) -> list[StatRow]:
        rows = await self._all(
            "SELECT hour, category, region, channel, count, repeat FROM complaint_stats"
            " WHERE hour >= ? AND hour < ? ORDER BY hour, category, region, channel",
            (hour_floor(start), end.timestamp()),
        )
        return [StatRow(int(h), c, r, ch, int(n), int(rp)) for h, c, r, ch, n, rp in rows]
