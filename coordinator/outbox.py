"""Fan-out: the outbox worker. Deliveries are created (deduplicated on incident, version,
person, channel) before anything is sent; a worker claims due ones with a lease, sends
each through its channel within per-channel concurrency and rate limits, and records
the result only after the provider accepted it. A retryable failure is retried with
backoff; a permanent one (invalid number, opted out) ends the delivery and is handed
back, so that an SMS can fall back to email. A crashed worker's claims lapse and
another worker takes them over."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Awaitable, Callable

from .channels.base import Accepted, EmailChannel, SendError, SmsChannel
from .clock import Clock
from .models import Delivery, DeliveryStatus
from .store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Content:
    """What one delivery carries: the version's text for its channel."""

    sms: str
    email_subject: str
    email_text: str
    email_html: str
    sms_segments: int = 1
    ack_url: str | None = None


@dataclass(frozen=True)
class OutboxLimits:
    sms_concurrency: int = 32
    email_concurrency: int = 8
    # Per second; SMS in segments (providers bill and throttle per segment). 0: no limit.
    sms_rate: float = 0.0
    email_rate: float = 0.0
    batch: int = 200
    lease_seconds: float = 60.0
    max_attempts: int = 8
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 60.0


class RateLimiter:
    """A token bucket: `acquire(n)` waits until n units fit under `rate` per second.
    Real time on purpose: it paces calls to a provider, not domain time."""

    def __init__(self, rate: float, burst: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate / 10)
        self.tokens = self.capacity
        self.monotonic = monotonic
        self.sleep = sleep
        self.last = monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self, units: float = 1.0) -> None:
        if self.rate <= 0:
            return
        async with self.lock:
            while True:
                now = self.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= units or self.tokens >= self.capacity:
                    self.tokens -= units
                    return
                await self.sleep((min(units, self.capacity) - self.tokens) / self.rate)


ContentFor = Callable[[Delivery], Awaitable[Content]]
PermanentFailure = Callable[[Delivery, SendError], Awaitable[None]]


class Outbox:
    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        content: ContentFor,
        sms: SmsChannel | None,
        email: EmailChannel | None,
        on_permanent: PermanentFailure,
        worker: str,
        limits: OutboxLimits = OutboxLimits(),
    ) -> None:
        self.store = store
        self.clock = clock
        self.content = content
        self.sms = sms
        self.email = email
        self.on_permanent = on_permanent
        self.worker = worker
        self.limits = limits
        self._slots = {"sms": asyncio.Semaphore(limits.sms_concurrency),
                       "email": asyncio.Semaphore(limits.email_concurrency)}
        self._rates = {"sms": RateLimiter(limits.sms_rate), "email": RateLimiter(limits.email_rate)}
        self.wake = asyncio.Event()

    async def run_once(self) -> int:
        """Claim what is due and send it; returns how many deliveries were handled."""
        claimed = await self.store.claim_deliveries(
            self.worker, self.clock.now(), self.limits.lease_seconds, self.limits.batch
        )
        if claimed:
            await asyncio.gather(*(self._deliver(d) for d in claimed))
        return len(claimed)

    async def run(self, stop: asyncio.Event, idle_seconds: float = 0.5) -> None:
        """Work until `stop` is set; sleeps when idle unless woken by new deliveries."""
        while not stop.is_set():
            try:
                handled = await self.run_once()
            except Exception:  # a worker must outlive one bad batch; the lease brings it back
                log.exception("outbox batch failed")
                handled = 0
            if not handled:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), idle_seconds)
                except asyncio.TimeoutError:
                    pass

    async def drain(self, timeout: float = 30.0) -> None:
        """Send until nothing is due (tests, the demo, a drill)."""
        deadline = time.monotonic() + timeout
        while await self.run_once():
            if time.monotonic() > deadline:
                raise TimeoutError("outbox did not drain in time")

    async def _deliver(self, delivery: Delivery) -> None:
        channel = delivery.key.medium
        key = delivery.key
        try:
            content = await self.content(delivery)
            async with self._slots[channel]:
                await self._rates[channel].acquire(content.sms_segments if channel == "sms" else 1)
                accepted = await self._send(delivery, content)
        except SendError as exc:
            await self._failed(delivery, exc)
            return
        status = DeliveryStatus.sent if accepted.status not in ("delivered",) else DeliveryStatus.delivered
        await self.store.update_delivery(key, status, at=self.clock.now(), provider_id=accepted.provider_id)
        await self.store.finish_delivery(key)

    async def _send(self, delivery: Delivery, content: Content) -> Accepted:
        did = delivery.key.as_id()
        if delivery.key.medium == "sms":
            if self.sms is None:
                raise SendError(did, "no-sms-channel", "no SMS channel is configured", retryable=False, permanent=True)
            return await self.sms.send_sms(did, delivery.address, delivery.text or content.sms)
        if self.email is None:
            raise SendError(did, "no-email-channel", "no email channel is configured", retryable=False, permanent=True)
        if delivery.text is not None:
            subject = delivery.text.split("】", 1)[0].lstrip("【") or "提醒"
            return await self.email.send_email(did, delivery.address, subject, delivery.text, "", ack_url=content.ack_url)
        return await self.email.send_email(did, delivery.address, content.email_subject, content.email_text,
                                           content.email_html, ack_url=content.ack_url)

    async def _failed(self, delivery: Delivery, error: SendError) -> None:
        attempts = delivery.attempts + 1
        key = delivery.key
        if error.retryable and attempts < self.limits.max_attempts:
            backoff = min(self.limits.backoff_max_seconds, self.limits.backoff_seconds * 2 ** (attempts - 1))
            due = self.clock.now() + timedelta(seconds=backoff * random.uniform(0.5, 1.0))
            await self.store.retry_delivery(key, due, attempts=attempts, error=error.code)
            log.info("delivery %s: %s, retry %d at %s", key.as_id(), error.code, attempts, due)
            return
        await self.store.update_delivery(key, DeliveryStatus.failed, at=self.clock.now(), error=error.code)
        await self.store.finish_delivery(key)
        log.warning("delivery %s failed: %s", key.as_id(), error)
        await self.on_permanent(delivery, error)
