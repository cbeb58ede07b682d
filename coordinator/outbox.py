"""Fan-out: the outbox worker. Deliveries are created (deduplicated on incident, version,
person, channel) before anything is sent; a worker claims due ones with a lease, each
medium (SMS, email) in its own loop, sends each through its channel within per-channel
concurrency and rate limits, and records the result only after the provider accepted
it (in group commits shared with the providers' status callbacks). A retryable failure is retried with
backoff; a permanent one (invalid number, opted out) ends the delivery and is handed
back, so that an SMS can fall back to email. A live worker renews the leases of what it
holds every few seconds, however long a delivery waits for a send slot; a crashed
worker's leases lapse within one short lease and another worker takes them over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Awaitable, Callable, Generic, TypeVar

from .channels.base import Accepted, EmailChannel, SmsChannel
from .errors import SendError
from . import metrics
from .logs import log_ids
from .clock import Clock
from .models import Delivery, DeliveryKey, DeliveryStatus
from .store import Store
from .store.records import MEDIA, ONE_BY_ONE, Moved, StatusUpdate

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
    # Sends in flight per channel. A provider answers in ~0.1-0.3 s over a real network,
    # so throughput per channel is about concurrency / round trip: 100 SMS in flight
    # keeps ~300-1000 SMS/s moving (Twilio queues per sender anyway). An SMTP session
    # carries one message at a time in four round trips, so email needs more sessions
    # for the same pace; 50 is a relay's usual per-client connection limit (Postfix).
    sms_concurrency: int = 100
    email_concurrency: int = 50
    # Per second; SMS in segments (providers bill and throttle per segment). 0: no limit.
    sms_rate: float = 0.0
    email_rate: float = 0.0
    batch: int = 200
    # Short, because the holder renews it (every third of it) while it lives: a dead
    # worker's claims are due again within this, a live one's never lapse.
    lease_seconds: float = 8.0
    max_attempts: int = 8
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 60.0

    def ahead(self, medium: str) -> int:
        """How many deliveries of a medium a worker holds claimed at once: enough to keep
        every send slot busy between claims, and under a rate limit no more than a
        tenth of the lease's worth, so none waits out its lease in the queue."""
        concurrency, rate = ((self.sms_concurrency, self.sms_rate) if medium == "sms"
                             else (self.email_concurrency, self.email_rate))
        ahead = concurrency + self.batch
        if rate > 0:
            ahead = min(ahead, max(1, int(rate * self.lease_seconds / 10)))
        return ahead


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


T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Writes submitted items in batches: whatever is submitted while one write runs goes
    into the next one, so a busy store sees a few large transactions instead of one per
    item, and an idle one still writes at once. `submit` returns its own item's result
    once the batch holding it is written."""

    def __init__(self, write: Callable[[list[T]], Awaitable[list[R]]], max_batch: int = 2000) -> None:
        self._write = write
        self._max = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                for _, future in batch:
                    future.cancel()
                raise
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)


class Wake:
    """Wakes the claim loop of each medium: new deliveries are waiting. `taken` waits
    until every running loop has claimed since the last wake, so that a publisher can let
    the first chunk of a large publication leave before writing the rest (its writes
    would otherwise queue ahead of the claim)."""

    def __init__(self) -> None:
        self._events = {medium: asyncio.Event() for medium in MEDIA}
        self._generation = 0
        self._claimed: dict[str, int] = {}  # medium -> generation its last claim saw
        self._progress = asyncio.Event()

    def set(self) -> None:
        self._generation += 1
        for event in self._events.values():
            event.set()

    def of(self, medium: str) -> asyncio.Event:
        return self._events[medium]

    def claiming(self, medium: str) -> int:
        """A claim loop is about to claim: clears its wake, returns what it will see."""
        self._events[medium].clear()
        return self._generation

    def claimed(self, medium: str, generation: int) -> None:
        self._claimed[medium] = generation
        self._progress.set()

    def stopped(self, medium: str) -> None:
        self._claimed.pop(medium, None)
        self._progress.set()

    async def taken(self, timeout: float) -> None:
        """Until each running claim loop has claimed what the last wake announced (at
        most `timeout` seconds; at once when no loop runs in this process)."""
        target = self._generation
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while any(seen < target for seen in self._claimed.values()):
                    self._progress.clear()
                    await self._progress.wait()


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
        wake: Wake,
        resume: Callable[[], Awaitable[object]],
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
        self.resume = resume
        self._slots = {"sms": asyncio.Semaphore(limits.sms_concurrency),
                       "email": asyncio.Semaphore(limits.email_concurrency)}
        self._rates = {"sms": RateLimiter(limits.sms_rate), "email": RateLimiter(limits.email_rate)}
        self._statuses: GroupCommit[StatusUpdate, Moved] = GroupCommit(store.update_deliveries)
        self.wake = wake
        # What this worker holds claimed and not yet handled, per medium, and when its
        # leases were last renewed.
        self._held: dict[str, dict[str, DeliveryKey]] = {medium: {} for medium in ONE_BY_ONE}
        self._renewed: dict[str, datetime] = {}

    async def record(self, update: StatusUpdate) -> Moved:
        """Apply a status update (a send's result, a provider's callback) together with
        whatever else is being recorded meanwhile: one store write per batch."""
        return metrics.counted(await self._statuses.submit(update), update.status)

    async def report(self, update: StatusUpdate) -> Moved:
        """The provider's word on a delivery after the send (a status callback, or a
        status look-up): recorded; one that moves it to undelivered or failed is handed
        on as a permanent failure, so an SMS falls back to email. Unknown (not ours, or
        from before a reset) or not news: nothing more happens."""
        updated, moved = await self.record(update)
        if updated is not None and moved and update.status in (DeliveryStatus.undelivered, DeliveryStatus.failed):
            await self.on_permanent(updated, SendError(updated.key.as_id(), update.error or update.status.value,
                                                       "not delivered", retryable=False, permanent=True))
        return Moved(updated, moved)

    async def run_once(self) -> int:
        """Claim what is due on each medium and send it; returns how many were handled."""
        now = self.clock.now()
        claimed = [d for medium in ONE_BY_ONE for d in await self.store.claim_deliveries(
            self.worker, now, self.limits.lease_seconds, self.limits.batch, medium=medium)]
        await asyncio.gather(*(self._deliver(d, now) for d in claimed))
        return len(claimed)

    async def run(self, stop: asyncio.Event, idle_seconds: float = 0.5) -> None:
        """Work until `stop` is set: one claim loop per medium, so that SMS never waits
        for email (or the other way round); sleeps when idle unless woken. First,
        `resume` finishes what a stopped service left half-published."""
        try:
            await self.resume()
        except Exception:  # the rest of the outbox still has to go out
            log.exception("outbox: resuming half-written publications failed")
        await asyncio.gather(*(self._serve(medium, stop, idle_seconds) for medium in ONE_BY_ONE))

    async def drain(self, timeout: float = 30.0) -> None:
        """Send until nothing is due (tests, the demo, a drill)."""
        deadline = time.monotonic() + timeout
        while await self.run_once():
            if time.monotonic() > deadline:
                raise TimeoutError("outbox did not drain in time")

    async def _serve(self, medium: str, stop: asyncio.Event, idle_seconds: float) -> None:
        """Keep up to `limits.ahead(medium)` deliveries claimed and being sent, claiming
        more whenever a chunk's worth has finished, so the send slots never run dry
        waiting for the slowest send of a batch."""
        wake = self.wake.of(medium)
        ahead = self.limits.ahead(medium)
        chunk = min(self.limits.batch, max(1, ahead // 2))
        sending: set[asyncio.Task[None]] = set()
        room = asyncio.Event()
        renewing = asyncio.create_task(self._renew(medium, stop))

        def finished(task: asyncio.Task[None]) -> None:
            sending.discard(task)
            if len(sending) <= ahead - chunk:
                room.set()

        try:
            while not stop.is_set():
                if len(sending) > ahead - chunk:
                    room.clear()
                    await room.wait()
                    continue
                generation = self.wake.claiming(medium)  # before claiming: a wake during the claim is not lost
                now = self.clock.now()
                try:
                    claimed = await self.store.claim_deliveries(
                        self.worker, now, self.limits.lease_seconds, ahead - len(sending), medium=medium)
                except Exception:  # a worker must outlive a store hiccup; the leases bring work back
                    log.exception("outbox: claiming %s deliveries failed", medium)
                    claimed = []
                held = self._held[medium]
                for delivery in claimed:
                    held[delivery.key.as_id()] = delivery.key  # renewed from now on
                    task = asyncio.create_task(self._deliver(delivery, now))
                    sending.add(task)
                    task.add_done_callback(finished)
                self.wake.claimed(medium, generation)
                if not claimed:
                    try:
                        await asyncio.wait_for(wake.wait(), idle_seconds)
                    except asyncio.TimeoutError:
                        pass
        finally:
            self.wake.stopped(medium)
        if sending:
            await asyncio.gather(*sending)
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing

    async def _renew(self, medium: str, stop: asyncio.Event) -> None:
        """Every third of a lease, extend the leases of what this worker holds."""
        every = self.limits.lease_seconds / 3
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            held = list(self._held[medium].values())
            if not held:
                continue
            now = self.clock.now()
            try:
                await self.store.renew_claims(self.worker, held, now + timedelta(seconds=self.limits.lease_seconds))
                self._renewed[medium] = now
            except Exception:  # the next round tries again; a send checks its lease first
                log.exception("outbox: renewing %d %s claims failed", len(held), medium)

    async def _deliver(self, delivery: Delivery, claimed_at: datetime) -> None:
        did = delivery.key.as_id()
        with log_ids(delivery_id=did, incident_id=delivery.key.incident_id), metrics.timed_send(delivery.key.medium):
            try:
                await self._attempt(delivery, claimed_at)
            except Exception:  # the lease brings it back; nothing was recorded as sent
                log.exception("delivery %s: not handled", did)
            finally:
                self._held[delivery.key.medium].pop(did, None)

    async def _attempt(self, delivery: Delivery, claimed_at: datetime) -> None:
        medium = delivery.key.medium
        key = delivery.key
        try:
            # The slot first: a backlog of claimed deliveries waits here, not in the
            # store (each content read is a store call; hundreds at once exhausted it).
            async with self._slots[medium]:
                content = await self.content(delivery)
                await self._rates[medium].acquire(content.sms_segments if medium == "sms" else 1)
                lease_from = max(claimed_at, self._renewed.get(medium, claimed_at))
                if self.clock.now() - lease_from > timedelta(seconds=self.limits.lease_seconds / 2):
                    # The lease was not renewed for so long (a store outage) that it could
                    # lapse mid-send and another worker send it too: leave it to whoever
                    # claims it next.
                    log.warning("delivery %s: lease not renewed lately, left for the next claim", key.as_id())
                    return
                accepted = await self._send(delivery, content, claimed_at)
        except SendError as exc:
            await self._failed(delivery, exc)
            return
        status = DeliveryStatus.delivered if accepted.status == "delivered" else DeliveryStatus.sent
        await self.record(StatusUpdate(key, status, self.clock.now(), provider_id=accepted.provider_id, finish=True))
    async def _send(self, delivery: Delivery, content: Content, claimed_at: datetime) -> Accepted:
        did = delivery.key.as_id()
        if delivery.key.medium == "sms":
            if self.sms is None:
                raise SendError(did, "no-sms-channel", "no SMS channel is configured", retryable=False, permanent=True)
            # Claimed before this claim: a worker may have sent it and died (or failed
            # unclear in another process) before recording it, so the channel looks first.
            first = delivery.claimed_at
            since = first if first is not None and first < claimed_at else None
            return await self.sms.send_sms(did, delivery.address, delivery.text or content.sms, since=since)
        if self.email is None:
            raise SendError(did, "no-email-channel", "no email channel is configured", retryable=False, permanent=True)
        if delivery.text is not None:
            subject = delivery.subject or content.email_subject
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
        await self.record(StatusUpdate(key, DeliveryStatus.failed, self.clock.now(), error=error.code, finish=True))
        log.warning("delivery %s failed: %s", key.as_id(), error)
        await self.on_permanent(delivery, error)
