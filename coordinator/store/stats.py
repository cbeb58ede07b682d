"""Complaint statistics in both stores: counts and repeat counts per (UTC hour, category,
region, channel), kept up to date by `add_complaints` as each complaint is stored, so a
month's statistics read a few thousand rows instead of every complaint. Drill
complaints are not counted. Mixed into SqliteStore and RedisStore like drill_runs.py.

Why UTC hours rather than days in the operator's time zone: every writer (intake,
`replay --store`, drills, other instances) stores complaints without knowing the
configured zone, and a change of COORDINATOR_TIMEZONE should not leave history bucketed
by the old one. coordinator/stats.py rolls hours up into local days when reading; that
is exact for every zone whose UTC offset is a whole number of hours (all of China, and
DST zones too). Complaints stored before these counts existed are not in them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..models import Complaint

HOUR = 3600
_DAY = 86400
# Separates the parts of a Redis field; regions are lowercase ids, categories and
# channels come from the catalog, none of them holds it.
SEP = "|"

STATS_SCHEMA = """
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


@dataclass(frozen=True, slots=True)
class StatRow:
    """Complaints of one UTC hour in one category, region and channel."""

    hour: int  # epoch seconds of the hour's start (UTC)
    category: str
    region: str
    channel: str
    count: int
    repeat: int  # of them, repeats (the same subscriber within the repeat window)


def hour_floor(when: datetime) -> int:
    """Epoch seconds of the start of the UTC hour holding `when`."""
    ts = int(when.timestamp())
    return ts - ts % HOUR


class StatTally:
    """One batch's counts, gathered while the batch is stored and written in one go."""

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


class SqliteStats:
    _all: Any  # SqliteStore's query helper

    async def complaint_stats(self, start: datetime, end: datetime) -> list[StatRow]:
        rows = await self._all(
            "SELECT hour, category, region, channel, count, repeat FROM complaint_stats"
            " WHERE hour >= ? AND hour < ? ORDER BY hour, category, region, channel",
            (hour_floor(start), end.timestamp()),
        )
        return [StatRow(int(h), c, r, ch, int(n), int(rp)) for h, c, r, ch, n, rp in rows]


def redis_stat_args(stats_key: Any, complaint: Complaint) -> list[str]:
    """The two arguments the intake script takes per complaint: the hash of its UTC day
    and the field of its hour, category, region and channel ('' twice for a drill)."""
    if complaint.drill:
        return ["", ""]
    hour = hour_floor(complaint.received_at)
    field = SEP.join((str(hour), complaint.category, complaint.region, complaint.channel.value))
    return [stats_key(hour // _DAY), field]


class RedisStats:
    _r: Any
    keys: Any

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
