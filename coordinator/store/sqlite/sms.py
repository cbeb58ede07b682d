"""SMS indexes and opt-outs in SQLite. `SqliteDeliveries.update_deliveries` keeps both
indexes (the sms_sent table and the deliveries' settle_at column) as statuses move."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from ...models import Delivery, DeliveryKey
from .connection import SqliteConnection

SMS_SCHEMA = """
-- The SMS a provider accepted, by phone, in the order they were recorded: the index an
-- SMS reply is matched through.
CREATE TABLE IF NOT EXISTS sms_sent (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, phone TEXT NOT NULL, delivery_id TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS sms_sent_phone ON sms_sent (phone, seq);
CREATE TABLE IF NOT EXISTS opt_outs (phone TEXT PRIMARY KEY);
"""


class SqliteSms(SqliteConnection):
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

    async def set_opt_out(self, phone: str, opted_out: bool) -> None:
        async with self._write:
            sql = "INSERT OR IGNORE INTO opt_outs VALUES (?)" if opted_out else "DELETE FROM opt_outs WHERE phone = ?"
            await self._db.execute(sql, (phone,))
            await self._db.commit()

    async def opted_out(self) -> set[str]:
        return {r[0] for r in await self._all("SELECT phone FROM opt_outs")}
