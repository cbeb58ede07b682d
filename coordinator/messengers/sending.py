"""Sending to the messengers (DingTalk work notifications, WeCom app messages): one
vendor call carries one card to many people, so the messenger deliveries are claimed per
medium (as the outbox claims SMS and email), grouped by what they carry (incident,
version, purpose, text) and sent in the vendor's chunks: DingTalk's userid_list of at
most 100 per asyncsend_v2, WeCom's touser of at most 1,000 joined by "|". Each delivery
records its call's DingTalk task_id or WeCom msgid as its provider id.

Results per delivery: sent when the vendor took the call; failed for good, with the
vendor's error, for those WeCom names invalid (DingTalk names them later, in its read
state: reads.py); a rate limit or an unclear answer is retried with back-off
for that chunk's deliveries only; a configuration error fails the chunk (and hands each
on, so the person's next channel is tried). DingTalk's calls are paced under its 20 calls
a second per API."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from ..channels.dingtalk import MAX_MSG_BYTES, DingTalkClient
from ..channels.messenger import Sent
from ..channels.wecom import WeComClient
from ..clock import Clock
from ..errors import PartlySent, SendError
from ..logs import log_ids
from ..models import Delivery, DeliveryStatus
from ..outbox import Content, RateLimiter, Wake
from ..store import Store
from ..store.records import MESSENGERS, Moved, StatusUpdate

log = logging.getLogger(__name__)

CHUNK = {"dingtalk": 100, "wecom": 1000}
BUTTON = "确认"
WECOM_TITLE_CHARS = 36  # main_title.title: longer is cut by WeCom's card


@dataclass(frozen=True)
class MessengerLimits:
    # Deliveries claimed at once per medium: DingTalk sends 100 a call at 18 calls a
    # second, so 1,800 a second; a claim of 2,000 goes out well within its lease.
    batch: int = 2000
    lease_seconds: float = 8.0
    max_attempts: int = 8
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    # Under DingTalk's 20 calls a second per API (90018 past it), evenly spaced.
    dingtalk_calls_per_second: float = 18.0
    # Calls in flight at once per medium.
    concurrency: int = 8


ContentFor = Callable[[Delivery], Awaitable[Content]]
Record = Callable[[StatusUpdate], Awaitable[Moved]]
PermanentFailure = Callable[[Delivery, SendError], Awaitable[None]]
CardLink = Callable[[str, int], str]


def group_key(delivery: Delivery) -> tuple[str, int, str, str]:
    """Deliveries that carry the same card: one incident, version, purpose and text."""
    return (delivery.key.incident_id, delivery.key.version, delivery.key.purpose, delivery.text or "")


def chunks(deliveries: Sequence[Delivery], medium: str) -> list[list[Delivery]]:
    """The vendor calls for `deliveries`: grouped by card, at most the vendor's chunk each,
    one delivery per userid (a person listed twice would count twice against limits)."""
    groups: dict[tuple[str, int, str, str], dict[str, Delivery]] = {}
    for d in deliveries:
        groups.setdefault(group_key(d), {}).setdefault(d.address.lower(), d)
    size = CHUNK[medium]
    out: list[list[Delivery]] = []
    for by_user in groups.values():
        ds = list(by_user.values())
        out += [ds[i:i + size] for i in range(0, len(ds), size)]
    return out


def card_text(content: Content, delivery: Delivery, limit: int = MAX_MSG_BYTES - 400) -> tuple[str, str]:
    """The card's title and body: the email's subject and text (the full wording), or the
    SMS text when the email's is over what the vendor's card takes."""
    title = delivery.subject or content.email_subject
    body = delivery.text if delivery.text is not None else content.email_text
    if len(body.encode()) > limit:
        body = content.sms
    return title, body


class MessengerOutbox:
    def __init__(self, store: Store, *, clock: Clock, content: ContentFor, dingtalk: DingTalkClient | None,
                 wecom: WeComClient | None, card_link: CardLink, record: Record, on_permanent: PermanentFailure,
                 worker: str, wake: Wake, limits: MessengerLimits = MessengerLimits()) -> None:
        """`record` applies a status update (Outbox.record, in its group commits);
        `on_permanent` hands on a delivery failed for good (Messages.fallback);
        `card_link(incident, version)` is the DingTalk card's button link."""
        self.store = store
        self.clock = clock
        self.content = content
        self.clients = {"dingtalk": dingtalk, "wecom": wecom}
        self.card_link = card_link
        self.record = record
        self.on_permanent = on_permanent
        self.worker = worker
        self.wake = wake
        self.limits = limits
        self._pace = RateLimiter(limits.dingtalk_calls_per_second, burst=1.0)
        self._slots = {m: asyncio.Semaphore(limits.concurrency) for m in MESSENGERS}

    async def run_once(self) -> int:
        """Claim what is due on each messenger and send it; returns how many were handled."""
        handled = 0
        for medium in MESSENGERS:
            handled += await self._claim_and_send(medium)
        return handled

    async def drain(self, timeout: float = 30.0) -> None:
        """Send until nothing is due (tests, the demo, a drill)."""
        deadline = time.monotonic() + timeout
        while await self.run_once():
            if time.monotonic() > deadline:
                raise TimeoutError("messenger outbox did not drain in time")

    async def run(self, stop: asyncio.Event, idle_seconds: float = 0.5) -> None:
        """One claim loop per messenger until `stop` is set; sleeps when idle unless woken."""
        await asyncio.gather(*(self._serve(medium, stop, idle_seconds) for medium in MESSENGERS))

    async def _serve(self, medium: str, stop: asyncio.Event, idle_seconds: float) -> None:
        wake = self.wake.of(medium)
        try:
            while not stop.is_set():
                generation = self.wake.claiming(medium)
                try:
                    handled = await self._claim_and_send(medium)
                except Exception:  # the leases bring the work back
                    log.exception("messenger outbox: %s round failed", medium)
                    handled = 0
                self.wake.claimed(medium, generation)
                if not handled:
                    try:
                        await asyncio.wait_for(wake.wait(), idle_seconds)
                    except asyncio.TimeoutError:
                        pass
        finally:
            self.wake.stopped(medium)

    async def _claim_and_send(self, medium: str) -> int:
        now = self.clock.now()
        claimed = await self.store.claim_deliveries(self.worker, now, self.limits.lease_seconds, self.limits.batch,
                                                    medium=medium)
        if claimed:
            await asyncio.gather(*(self._send_chunk(medium, chunk) for chunk in chunks(claimed, medium)))
            # A userid listed twice in one claim (the same person twice): the rest wait a round.
            sent = {d.key.as_id() for c in chunks(claimed, medium) for d in c}
            for d in claimed:
                if d.key.as_id() not in sent:
                    await self.store.retry_delivery(d.key, now, attempts=d.attempts, error=d.error or "")
        return len(claimed)

    async def _send_chunk(self, medium: str, chunk: list[Delivery]) -> None:
        first = chunk[0]
        did = first.key.as_id()
        with log_ids(incident_id=first.key.incident_id, delivery_id=did):
            try:
                async with self._slots[medium]:
                    client = self.clients[medium]
                    if client is None:
                        raise SendError(did, f"no-{medium}-channel", f"no {medium} channel is configured",
                                        retryable=False, permanent=True)
                    content = await self.content(first)
                    title, body = card_text(content, first)
                    if isinstance(client, DingTalkClient):
                        await self._pace.acquire()
                        link = self.card_link(first.key.incident_id, first.key.version)
                        sent = await client.send_card(did, title, body, {d.address: link for d in chunk},
                                                      button=BUTTON)
                    else:
                        sent = [await client.send_button_card(
                            did, [d.address for d in chunk], task_id(first), title[:WECOM_TITLE_CHARS], body,
                            key=card_key(first), button=BUTTON)]
            except PartlySent as exc:
                done = {u for s in exc.sent for u in s.userids}
                await self._accepted([d for d in chunk if d.address in done], list(exc.sent))
                await self._failed([d for d in chunk if d.address not in done], exc)
                return
            except SendError as exc:
                await self._failed(chunk, exc)
                return
            except Exception:  # the lease brings them back; nothing was recorded as sent
                log.exception("messenger chunk of %d %s deliveries: not handled", len(chunk), medium)
                return
            await self._accepted(chunk, sent)

    async def _accepted(self, chunk: list[Delivery], sent: list[Sent]) -> None:
        """Record what the vendor took, the chunk's updates submitted together (one
        group commit), then hand on those it refused."""
        now = self.clock.now()
        by_user = {u.lower(): s for s in sent for u in s.userids}
        rejected = {u.lower() for s in sent for u in s.rejected}
        updates, refused = [], []
        for d in chunk:
            call = by_user.get(d.address.lower())
            if call is None:
                continue
            bad = d.address.lower() in rejected
            updates.append(StatusUpdate(d.key, DeliveryStatus.failed if bad else DeliveryStatus.sent, now,
                                        provider_id=provider_id_of(call.provider_id, d.address),
                                        error="invaliduser" if bad else None, finish=True))
            if bad:
                refused.append(d)
        await asyncio.gather(*(self.record(u) for u in updates))
        for d in refused:
            await self.on_permanent(d, SendError(d.key.as_id(), "invaliduser", f"{d.key.medium} does not know "
                                                 "this userid", retryable=False, permanent=True))

    async def _failed(self, chunk: list[Delivery], error: SendError) -> None:
        now = self.clock.now()
        final = []
        for d in chunk:
            attempts = d.attempts + 1
            if error.retryable and attempts < self.limits.max_attempts:
                backoff = min(self.limits.backoff_max_seconds, self.limits.backoff_seconds * 2 ** (attempts - 1))
                due = now + timedelta(seconds=backoff * random.uniform(0.5, 1.0))
                await self.store.retry_delivery(d.key, due, attempts=attempts, error=error.code)
            else:
                final.append(d)
        await asyncio.gather(*(self.record(StatusUpdate(d.key, DeliveryStatus.failed, now, error=error.code,
                                                        finish=True)) for d in final))
        for d in final:
            await self.on_permanent(d, error)
        if error.retryable:
            log.info("%d %s deliveries: %s, retried with back-off", len(chunk), chunk[0].key.medium, error.code)
        else:
            log.warning("%d %s deliveries failed: %s", len(chunk), chunk[0].key.medium, error)


def provider_id_of(call_id: str, userid: str) -> str:
    """A delivery's provider id: its call's task_id or msgid and its userid (a store keeps
    provider ids unique; one call carries many deliveries)."""
    return f"{call_id}:{userid}"


def call_of(provider_id: str) -> str:
    """The task_id or msgid in a `provider_id_of`."""
    return provider_id.split(":", 1)[0]


def task_id(delivery: Delivery) -> str:
    """A WeCom task_id, unique within the app (42014 otherwise): the card's incident,
    version and purpose, and a random tail (a retried call is a new card)."""
    purpose = delivery.key.purpose.replace(":", "-") or "script"
    return f"{delivery.key.incident_id}_v{delivery.key.version}_{purpose}_{secrets.token_hex(6)}"[-128:]


def card_key(delivery: Delivery) -> str:
    """The button's key, back as the press's EventKey: what the press acknowledges."""
    return f"ack:{delivery.key.incident_id}:{delivery.key.version}"


def parse_card_key(key: str) -> tuple[str, int] | None:
    """(incident, version) of a `card_key`, or None."""
    head, _, rest = key.partition(":")
    incident_id, _, version = rest.rpartition(":")
    if head != "ack" or not incident_id or not version.isdigit():
        return None
    return incident_id, int(version)
