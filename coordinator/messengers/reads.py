"""DingTalk's read receipts, polled: each work-notification task of an open incident is
looked up with getsendresult, first soon after it went out, then less and less often
(15 s, 30 s, 1 min, ... up to 10 min), until everyone it carried has read it (or failed),
the incident is resolved, or DingTalk's 24 hours of keeping the result are over. Calls are
paced under DingTalk's 20 calls a second per API.

What DingTalk says moves each delivery forward only (the store's rule): read -> `read`,
unread -> `delivered`, an unknown userid or a failure -> `failed` (handed on as a
permanent failure, so the person's next channel is tried), flow control -> `undelivered`.

WeCom has no read state for app messages (its API reports none per member), so WeCom
deliveries stay `sent` until the card's button is pressed (an acknowledgement).

The schedule is kept in this process: several instances each poll (within the rate, each
paced on its own); a restart starts every task's schedule again at its shortest wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from ..channels.dingtalk import DingTalkClient
from ..clock import Clock
from ..errors import SendError
from .sending import call_of
from ..models import DELIVERY_RANK, Delivery, DeliveryStatus, Medium
from ..outbox import RateLimiter
from ..store import Store
from ..store.records import Moved, StatusUpdate

log = logging.getLogger(__name__)

FIRST_WAIT = timedelta(seconds=15)
LONGEST_WAIT = timedelta(minutes=10)
KEPT = timedelta(hours=24)  # DingTalk keeps a task's result this long
OPEN = (DeliveryStatus.sent, DeliveryStatus.delivered)


class ReadPoller:
    def __init__(self, *, store: Store, clock: Clock, dingtalk: DingTalkClient | None,
                 report: Callable[[StatusUpdate], Awaitable[Moved]], calls_per_second: float = 10.0) -> None:
        """`report` records what DingTalk says (Outbox.report: a failure is handed on)."""
        self.store = store
        self.clock = clock
        self.dingtalk = dingtalk
        self.report = report
        self._pace = RateLimiter(calls_per_second, burst=1.0)
        self._due: dict[str, tuple[datetime, timedelta]] = {}  # task -> next poll, wait after it
        self.calls = 0

    async def poll_once(self) -> int:
        """Poll every task due now; returns the deliveries whose status moved."""
        if self.dingtalk is None:
            return 0
        now = self.clock.now()
        moved = 0
        live: set[str] = set()
        for incident in await self.store.list_incidents():
            if not incident.is_open:
                continue
            tasks: dict[str, list[Delivery]] = {}
            for d in await self.store.deliveries(incident.id):
                if d.key.medium == Medium.dingtalk and d.provider_id and d.status in OPEN \
                        and now - d.updated_at < KEPT:
                    tasks.setdefault(call_of(d.provider_id), []).append(d)
            for task, group in tasks.items():
                live.add(task)
                due, wait = self._due.get(task, (now, FIRST_WAIT))
                if due > now:
                    continue
                moved += await self._poll(task, group)
                self._due[task] = (self.clock.now() + wait, min(LONGEST_WAIT, wait * 2))
        for task in set(self._due) - live:  # all read, failed, or the incident is over
            del self._due[task]
        return moved

    async def _poll(self, task: str, group: list[Delivery]) -> int:
        assert self.dingtalk is not None
        await self._pace.acquire()
        self.calls += 1
        try:
            state = await self.dingtalk.read_state(group[0].key.as_id(), task)
        except SendError as exc:
            log.info("dingtalk task %s: read state not read (%s); tried again later", task, exc.code)
            return 0
        now = self.clock.now()
        moved = 0
        for d in group:
            userid = d.address
            status = DeliveryStatus.read if userid in state.read else state.status_of(userid)
            if DELIVERY_RANK[status] <= DELIVERY_RANK[d.status]:
                continue
            error = ("invalid-user" if userid in state.invalid else "failed" if userid in state.failed
                     else "forbidden" if userid in state.forbidden else None)
            updated, did_move = await self.report(StatusUpdate(d.key, status, now, error=error))
            moved += did_move
        return moved

    async def run(self, stop: asyncio.Event, every_seconds: float = 5.0) -> None:
        """Poll until `stop` is set."""
        while not stop.is_set():
            try:
                await self.poll_once()
            except Exception:  # the next round tries again
                log.exception("polling DingTalk read state failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_seconds)
