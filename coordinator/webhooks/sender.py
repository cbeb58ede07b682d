"""Sending lifecycle events (lifecycle.py) to webhook subscribers, from their queues in
the store: one loop per subscriber, so that a slow or dead one never holds up another;
each event claimed with a lease before it is sent, so that several instances on one
store never send it at once; retried with exponential back-off and jitter until a 2xx,
given up on a 410 Gone or when older than webhooks.yaml's max_age_hours (dropped,
counted and logged). Signed as the Standard Webhooks specification says (webhook-id,
webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>),
with its reference library; the body is the same bytes on every attempt. Nothing a
subscriber's URL holds is logged (it may carry a token): subscribers are named by id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import aiohttp
from standardwebhooks import Webhook

from .. import metrics
from ..clock import Clock
from ..config.webhooks import Subscriber, Webhooks
from ..errors import StoreError
from .events import LifecycleEvents
from ..store.protocols.webhooks import WebhookDelivery, WebhookStore

log = logging.getLogger(__name__)

BASE_DELAY = 5.0  # seconds before the second attempt (half of it drawn)
MAX_DELAY = 3600.0  # the back-off's cap, Retry-After's too
IN_FLIGHT = 8  # events of one subscriber claimed and sent at once
LEASE_MARGIN = 10.0  # a claim outlives the send's timeout by this
POLL_SECONDS = 1.0  # how often an idle loop looks for due events (other instances queue too)
ORPHANS_EVERY = 30.0  # how often queues of subscribers no longer configured are looked for
STOP_GRACE_SECONDS = 5.0  # at shutdown, how long sends in flight may take to finish
CONTENT_TYPE = "application/cloudevents+json"
USER_AGENT = "coordinator-webhooks/1"


def backoff(attempts: int, draw: float, retry_after: float | None = None) -> float:
    """Seconds to wait after the `attempts`-th failed attempt: 5 s, 10 s, 20 s, ...
    capped at an hour, with "equal jitter" (half fixed, half drawn: `draw` in [0, 1)) so
    that events failed together do not come back together; a Retry-After the subscriber
    sent (429, 503) is honoured when longer, up to the cap."""
    ceiling = min(MAX_DELAY, BASE_DELAY * 2.0 ** max(0, attempts - 1))
    delay = ceiling / 2 * (1 + draw)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, MAX_DELAY)
    return delay


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (its HTTP-date form is not honoured: back-off)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def signed_headers(secret: str, event_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The headers of one attempt: the Standard Webhooks signature over id.timestamp.body
    with the subscriber's secret, the timestamp being the attempt's."""
    return {"Content-Type": CONTENT_TYPE, "User-Agent": USER_AGENT, "webhook-id": event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(event_id, now, body)}


@dataclass(frozen=True)
class Answer:
    """What one attempt came to: the HTTP status (None: no answer) and why it failed."""

    status: int | None
    error: str = ""
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        return self.status == 410


class WebhookSender:
    def __init__(self, *, store: WebhookStore, webhooks: Callable[[], Webhooks], clock: Clock, wake: asyncio.Event,
                 worker: str, draw: Callable[[], float] = random.random) -> None:
        """`webhooks`: the config in use (a reload reaches the loops at their next
        round); `wake`: set when this instance queued events."""
        self.store = store
        self.webhooks = webhooks
        self.clock = clock
        self.wake = wake
        self.owner = f"{worker}/webhooks"
        self.draw = draw
        self._nudges: dict[str, asyncio.Event] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Keep one loop per subscriber configured (and per queue left by one removed
        from the config, to drop its events once too old) until `stop` is set."""
        loops: dict[str, asyncio.Task[None]] = {}
        orphans: set[str] = set()
        looked = -ORPHANS_EVERY
        loop_time = asyncio.get_running_loop().time
        try:
            while not stop.is_set():
                configured = {s.id for s in self.webhooks().subscribers}
                if loop_time() - looked >= ORPHANS_EVERY:
                    looked = loop_time()
                    with contextlib.suppress(StoreError):
                        orphans = set(await self.store.webhook_queue_depths()) - configured
                for subscriber_id in (configured | orphans) - set(loops):
                    self._nudges[subscriber_id] = asyncio.Event()
                    loops[subscriber_id] = asyncio.create_task(self._serve(subscriber_id, stop))
                for subscriber_id in set(loops) - configured - orphans:
                    loops.pop(subscriber_id).cancel()
                    self._nudges.pop(subscriber_id, None)
                for subscriber_id, task in list(loops.items()):
                    if task.done():  # an orphan's queue is empty, or a loop failed: started again
                        loops.pop(subscriber_id)
                        orphans.discard(subscriber_id)
                        if not task.cancelled() and task.exception() is not None:
                            log.error("webhooks for %s stopped: %r; starting again", subscriber_id, task.exception())
                await _first(stop, self.wake, POLL_SECONDS)
                if self.wake.is_set():
                    self.wake.clear()
                    for nudge in self._nudges.values():
                        nudge.set()
        finally:
            # Sends in flight get a moment to finish; one cut short is sent again later
            # (its claim lapses): at least once.
            if loops:
                await asyncio.wait(loops.values(), timeout=STOP_GRACE_SECONDS)
            for task in loops.values():
                task.cancel()
            await asyncio.gather(*loops.values(), return_exceptions=True)

    async def _serve(self, subscriber_id: str, stop: asyncio.Event) -> None:
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector) as session:
            while not stop.is_set():
                subscriber = self.webhooks().subscriber(subscriber_id)
                try:
                    if subscriber is None:
                        if not await self._expire(subscriber_id):
                            return
                        claimed = 0
                    else:
                        claimed = await self._round(session, subscriber)
                except StoreError as exc:
                    log.warning("webhooks for %s: the store failed (%s); trying again", subscriber_id, exc)
                    claimed = 0
                if not claimed:
                    nudge = self._nudges.get(subscriber_id) or asyncio.Event()
                    await _first(stop, nudge, POLL_SECONDS)
                    nudge.clear()

    async def _round(self, session: aiohttp.ClientSession, subscriber: Subscriber) -> int:
        """Claim up to IN_FLIGHT due events and send them side by side."""
        claimed = await self.store.claim_webhooks(subscriber.id, self.owner, self.clock.now(),
                                                  subscriber.timeout_seconds + LEASE_MARGIN, IN_FLIGHT)
        await asyncio.gather(*(self._deliver(session, subscriber, d) for d in claimed))
        return len(claimed)

    async def _deliver(self, session: aiohttp.ClientSession, subscriber: Subscriber, d: WebhookDelivery) -> None:
        now = self.clock.now()
        max_age = self.webhooks().max_age_seconds
        if (now - d.created_at).total_seconds() > max_age:
            await self._drop(d, now, f"older than {max_age / 3600:g} h")
            return
        answer = await self._post(session, subscriber, d, now)
        if answer.delivered:
            await self.store.finish_webhook(d.subscriber, d.event_id, self.clock.now())
            metrics.WEBHOOKS.labels(d.subscriber, "sent").inc()
        elif answer.gone:
            await self.store.finish_webhook(d.subscriber, d.event_id, self.clock.now())
            metrics.WEBHOOKS.labels(d.subscriber, "gone").inc()
            log.warning("webhook %s to %s: 410 Gone, not retried", d.event_id, d.subscriber)
        else:
            attempts = d.attempts + 1
            delay = backoff(attempts, self.draw(), answer.retry_after)
            await self.store.retry_webhook(d.model_copy(update={"attempts": attempts, "last_error": answer.error}),
                                           self.owner, self.clock.now() + timedelta(seconds=delay))
            metrics.WEBHOOKS.labels(d.subscriber, "failed").inc()
            log.info("webhook %s to %s failed (attempt %d: %s); again in %.0f s", d.event_id, d.subscriber,
                     attempts, answer.error, delay)

    async def _post(self, session: aiohttp.ClientSession, subscriber: Subscriber, d: WebhookDelivery,
                    now: datetime) -> Answer:
        body = d.body.encode("utf-8")
        try:
            async with session.post(subscriber.url, data=body, headers=signed_headers(subscriber.secret, d.event_id,
                                                                                     body, now),
                                    timeout=aiohttp.ClientTimeout(total=subscriber.timeout_seconds),
                                    allow_redirects=False) as resp:
                await resp.read()
                return Answer(resp.status, f"HTTP {resp.status}", retry_after_seconds(resp.headers.get("Retry-After")))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer(None, f"{type(exc).__name__}: no answer" if isinstance(exc, TimeoutError)
                          else type(exc).__name__)

    async def _expire(self, subscriber_id: str) -> bool:
        """A subscriber removed from the config: its events wait (it may come back) and
        are dropped once too old. False when its queue is empty."""
        now = self.clock.now()
        max_age = self.webhooks().max_age_seconds
        claimed = await self.store.claim_webhooks(subscriber_id, self.owner, now, 60.0, 100)
        for d in claimed:
            if (now - d.created_at).total_seconds() > max_age:
                await self._drop(d, now, "its subscriber is no longer in webhooks.yaml")
            else:
                await self.store.retry_webhook(d, self.owner, d.created_at + timedelta(seconds=max_age + 1))
        return bool((await self.store.webhook_queue_depths()).get(subscriber_id))

    async def _drop(self, d: WebhookDelivery, now: datetime, why: str) -> None:
        await self.store.finish_webhook(d.subscriber, d.event_id, now)
        metrics.WEBHOOKS.labels(d.subscriber, "dropped").inc()
        log.error("webhook %s (%s) to %s dropped after %d attempt(s), %s; last error: %s", d.event_id, d.event_type,
                  d.subscriber, d.attempts, why, d.last_error or "none")


async def _first(stop: asyncio.Event, other: asyncio.Event, timeout: float) -> None:
    """Wait until `stop` or `other` is set, or `timeout` passes."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(other.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def lifecycle_out(*, store: WebhookStore, webhooks: Callable[[], Webhooks], clock: Clock,
                  worker: str) -> tuple[LifecycleEvents, WebhookSender]:
    """The two halves of lifecycle events out, sharing the wake: what queues them (for
    IncidentUpdates and Drills) and what sends them (started with the service)."""
    wake = asyncio.Event()
    return (LifecycleEvents(store=store, webhooks=webhooks, wake=wake),
            WebhookSender(store=store, webhooks=webhooks, clock=clock, wake=wake, worker=worker))
