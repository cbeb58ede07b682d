"""Webhook queues in SQLite: one row per (subscriber, event), pending or finished (kept a
while so that the same event is not queued twice); a claim reads the due rows and leases
them under the one write lock."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from ..protocols.webhooks import KEEP_FINISHED, WebhookDelivery
from .connection import SqliteConnection

WEBHOOK_SCHEMA = """
-- pending = 1: due is when it is next sent (a claim moves it to the lease's end), owner
-- who holds the claim; pending = 0: delivered or given up, forgotten after `due`.
CREATE TABLE IF NOT EXISTS webhooks (
    subscriber TEXT NOT NULL, event_id TEXT NOT NULL, pending INTEGER NOT NULL, due REAL NOT NULL,
    owner TEXT, doc TEXT NOT NULL, PRIMARY KEY (subscriber, event_id)
);
CREATE INDEX IF NOT EXISTS webhooks_due ON webhooks (subscriber, due) WHERE pending = 1;
CREATE INDEX IF NOT EXISTS webhooks_finished ON webhooks (due) WHERE pending = 0;
"""


class SqliteWebhooks(SqliteConnection):
    async def enqueue_webhooks(self, deliveries: Sequence[WebhookDelivery]) -> int:
        rows = [(d.subscriber, d.event_id, d.created_at.timestamp(), d.model_dump_json()) for d in deliveries]
        async with self._write:
            before = self._db.total_changes
            await self._db.executemany(
                "INSERT OR IGNORE INTO webhooks (subscriber, event_id, pending, due, owner, doc)"
                " VALUES (?, ?, 1, ?, NULL, ?)", rows)
            await self._db.commit()
            return self._db.total_changes - before

    async def claim_webhooks(self, subscriber: str, owner: str, now: datetime, lease_seconds: float,
                             limit: int) -> list[WebhookDelivery]:
        async with self._write:
            due = await self._db.execute_fetchall(
                "SELECT event_id, doc FROM webhooks WHERE subscriber = ? AND pending = 1 AND due <= ?"
                " ORDER BY due LIMIT ?", (subscriber, now.timestamp(), limit))
            await self._db.executemany(
                "UPDATE webhooks SET owner = ?, due = ? WHERE subscriber = ? AND event_id = ?",
                [(owner, now.timestamp() + lease_seconds, subscriber, r[0]) for r in due])
            await self._db.commit()
        return [WebhookDelivery.model_validate_json(r[1]) for r in due]

    async def retry_webhook(self, delivery: WebhookDelivery, owner: str, due: datetime) -> bool:
        async with self._write:
            cur = await self._db.execute(
                "UPDATE webhooks SET due = ?, owner = NULL, doc = ?"
                " WHERE subscriber = ? AND event_id = ? AND pending = 1 AND owner = ?",
                (due.timestamp(), delivery.model_dump_json(), delivery.subscriber, delivery.event_id, owner))
            await self._db.commit()
        return cur.rowcount == 1

    async def finish_webhook(self, subscriber: str, event_id: str, now: datetime) -> None:
        async with self._write:
            await self._db.execute(
                "UPDATE webhooks SET pending = 0, owner = NULL, due = ? WHERE subscriber = ? AND event_id = ?",
                ((now + KEEP_FINISHED).timestamp(), subscriber, event_id))
            await self._db.execute("DELETE FROM webhooks WHERE pending = 0 AND due < ?", (now.timestamp(),))
            await self._db.commit()

    async def webhook_queue_depths(self) -> dict[str, int]:
        rows = await self._all("SELECT subscriber, COUNT(*) FROM webhooks WHERE pending = 1 GROUP BY subscriber")
        return {r[0]: int(r[1]) for r in rows}
