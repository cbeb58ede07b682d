"""Deliveries in SQLite: one row per delivery, its outbox state (pending, due, owner) in
the same row, so a claim is one UPDATE ... RETURNING."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import aiosqlite

from ...errors import StoreError
from ...models import DELIVERY_RANK, Delivery, DeliveryKey, DeliveryStatus
from ..records import ACCEPTED, Moved, StatusUpdate
from ..rules import apply_update, claimed, medium_of
from .connection import SqliteConnection

DELIVERY_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, rank INTEGER NOT NULL, provider_id TEXT,
    pending INTEGER NOT NULL, due REAL NOT NULL, owner TEXT, doc TEXT NOT NULL, medium TEXT NOT NULL DEFAULT '',
    claimed_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_incident ON deliveries (incident_id);
CREATE INDEX IF NOT EXISTS deliveries_outbox ON deliveries (due) WHERE pending = 1;
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_provider ON deliveries (provider_id) WHERE provider_id IS NOT NULL;
"""

_ADD_DELIVERY = (
    "INSERT OR IGNORE INTO deliveries (id, incident_id, rank, provider_id, pending, due, owner, doc, medium)"
    " VALUES (?, ?, ?, ?, 1, ?, NULL, ?, ?)"
)


async def migrate_deliveries(db: aiosqlite.Connection) -> None:
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
    await db.execute("CREATE INDEX IF NOT EXISTS deliveries_claimed ON deliveries (claimed_at)"
                     " WHERE pending = 1 AND claimed_at IS NOT NULL")
    async with db.execute("SELECT 1 FROM sqlite_master WHERE name = 'script_reach'") as cur:
        reach = await cur.fetchone()
    if reach is None:  # a file from before it: filled in from the deliveries' ids once
        await db.execute(_REACH_SCHEMA)
        async with db.execute("SELECT id FROM deliveries") as cur:
            keys = [k for k in (DeliveryKey.parse(row[0]) for row in await cur.fetchall()) if k is not None]
        await db.executemany(_ADD_REACH, [(k.incident_id, k.version, k.person_id) for k in keys if k.is_script])


# The people sent one script version (ids from `prefix` = "incident:version:" up to the
# next version's, script deliveries only: no "-purpose" after the medium) who have no
# acknowledgement of it (acks.ack_id = rules.ack_key(person, version)).
# For many (incident, version, ":version:-") at once (VALUES {}): those sent the version
# less those of them who acknowledged it.
_UNACKED = """
WITH v (incident_id, version, suffix) AS (VALUES {})
SELECT v.incident_id, (SELECT COUNT(*) FROM script_reach AS r WHERE r.incident_id = v.incident_id
                       AND r.version = v.version) - (
    SELECT COUNT(*) FROM acks AS a WHERE a.incident_id = v.incident_id
    AND substr(a.ack_id, -length(v.suffix)) = v.suffix
    AND EXISTS (SELECT 1 FROM script_reach AS r WHERE r.incident_id = v.incident_id AND r.version = v.version
                AND r.person_id = substr(a.ack_id, 1, length(a.ack_id) - length(v.suffix))))
FROM v
"""
# Who was sent each script version: kept beside the deliveries (one row per person and
# version), so that counting them (GET /metrics, every scrape) reads an index range
# instead of parsing every delivery id of the version.
_REACH_SCHEMA = """
CREATE TABLE IF NOT EXISTS script_reach (
    incident_id TEXT NOT NULL, version INTEGER NOT NULL, person_id TEXT NOT NULL,
    PRIMARY KEY (incident_id, version, person_id)
) WITHOUT ROWID
"""
_ADD_REACH = "INSERT OR IGNORE INTO script_reach VALUES (?, ?, ?)"


def _reach(deliveries: Sequence[Delivery]) -> list[tuple[str, int, str]]:
    return [(d.key.incident_id, d.key.version, d.key.person_id) for d in deliveries if d.key.is_script]


def _row(d: Delivery, due: datetime) -> tuple[Any, ...]:
    return (d.key.as_id(), d.key.incident_id, DELIVERY_RANK[d.status], d.provider_id, due.timestamp(),
            d.model_dump_json(), d.key.medium)


class SqliteDeliveries(SqliteConnection):
    async def add_delivery(self, delivery: Delivery, due: datetime | None = None) -> bool:
        async with self._write:
            cur = await self._db.execute(_ADD_DELIVERY, _row(delivery, due or delivery.updated_at))
            await self._db.executemany(_ADD_REACH, _reach([delivery]))
            await self._db.commit()
        return cur.rowcount == 1

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> int:
        rows = [_row(d, d.updated_at) for d in deliveries]
        async with self._write:
            before = self._db.total_changes
            await self._db.executemany(_ADD_DELIVERY, rows)
            added = self._db.total_changes - before
            await self._db.executemany(_ADD_REACH, _reach(deliveries))
            await self._db.commit()
            return added

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

    async def deliveries(self, incident_id: str) -> list[Delivery]:
        rows = await self._all("SELECT doc FROM deliveries WHERE incident_id = ? ORDER BY id", (incident_id,))
        return [Delivery.model_validate_json(r[0]) for r in rows]

    async def unacknowledged(self, versions: Mapping[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        pairs = list(versions.items())
        for i in range(0, len(pairs), 300):  # 3 parameters each, under SQLite's 999
            chunk = pairs[i : i + 300]
            params = [x for incident_id, version in chunk for x in (incident_id, version, f":{version}:-")]
            rows = await self._all(_UNACKED.format(",".join(["(?, ?, ?)"] * len(chunk))), params)
            out.update({r[0]: int(r[1]) for r in rows})
        return out

    async def oldest_claim(self) -> datetime | None:
        row = await self._one("SELECT MIN(claimed_at) FROM deliveries WHERE pending = 1 AND claimed_at IS NOT NULL")
        return datetime.fromtimestamp(row[0], timezone.utc) if row and row[0] is not None else None
