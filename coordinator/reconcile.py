"""Statuses that never came: SMS still `sent` long after the provider took them (their
final status callback was refused while the service was down, and providers do not
retry callbacks) are looked up at the provider, and what it says is recorded as a
callback would be, fallback to email included."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Awaitable, Callable

from .channels.base import SmsChannel
from .errors import SendError
from .clock import Clock
from .models import DELIVERY_RANK, Delivery, DeliveryStatus
from .store import SmsStore
from .store.records import Moved, StatusUpdate

log = logging.getLogger(__name__)

# Status look-ups per round, and at once: well inside a provider's API limits.
BATCH = 500
CONCURRENCY = 20
# Past this an SMS's status will not change any more (Twilio drops undelivered messages
# after their validity period, an hour here).
GIVE_UP = timedelta(days=1)


class StatusReconciler:
    def __init__(self, *, store: SmsStore, clock: Clock, sms: SmsChannel | None,
                 report: Callable[[StatusUpdate], Awaitable[Moved]]) -> None:
        """`report`: what a status callback's answer goes through (Outbox.report)."""
        self.store = store
        self.clock = clock
        self.sms = sms
        self.report = report

    async def run(self, *, after: timedelta, limit: int = BATCH) -> int:
        """Look up the SMS left at `sent` for `after` or more; one the provider still
        shows as sent is looked at again when twice as old, until a day has passed.
        Returns how many moved."""
        if self.sms is None:
            return 0
        now = self.clock.now()
        due = await self.store.unsettled_sms(now - after, limit)
        slots = asyncio.Semaphore(CONCURRENCY)

        async def check(delivery: Delivery) -> bool:
            assert self.sms is not None
            age = now - delivery.updated_at
            if delivery.provider_id is None or age > GIVE_UP:
                await self.store.defer_unsettled([delivery.key], None)
                return False
            try:
                async with slots:
                    status = await self.sms.status_of(delivery.key.as_id(), delivery.provider_id)
            except SendError as exc:
                log.info("delivery %s: status look-up failed (%s), tried again later", delivery.key.as_id(), exc.code)
                status = None
            if status is None or DELIVERY_RANK[status] <= DELIVERY_RANK[DeliveryStatus.sent]:
                await self.store.defer_unsettled([delivery.key], now - after + max(age, after))
                return False
            _, moved = await self.report(StatusUpdate(delivery.key, status, now, provider_id=delivery.provider_id))
            return moved

        moved = sum(await asyncio.gather(*(check(d) for d in due)))
        if due:
            log.info("looked up %d SMS left at sent: %d moved on", len(due), moved)
        return moved
