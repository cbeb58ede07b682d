"""What an SMS provider tells us over the channel's own connection rather than by HTTP
(SMPP's delivery receipts and replies), handed over to the service.

The channel is built before the service (the outbox sends through it), so it cannot
call the service itself. It puts each event here and waits, up to `wait_seconds`, for
the service to have handled it; if the service does not (not started yet, or its
handling failed), the channel's wait fails and the provider is answered with an error,
so it delivers the event again later: nothing is acknowledged that was not handled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")  # a receipt
M = TypeVar("M")  # a message someone sent us
T = TypeVar("T")
# Receipts handled at once: each is one store write (batched with its neighbours by the
# outbox), so a fan-out's receipts do not queue behind each other's writes.
RECEIPTS_AT_ONCE = 64


class Pushed(Generic[R, M]):
    def __init__(self, wait_seconds: float = 10.0) -> None:
        self.wait_seconds = wait_seconds
        self._queue: asyncio.Queue[tuple[R | None, M | None, asyncio.Future[None]]] = asyncio.Queue()
        self._stopped = False

    async def receipt(self, receipt: R) -> None:
        """The channel's: hand a receipt over and wait until it is handled."""
        await self._hand(receipt, None)

    async def message(self, message: M) -> None:
        """The channel's: hand a message over and wait until it is handled."""
        await self._hand(None, message)

    async def _hand(self, receipt: R | None, message: M | None) -> None:
        if self._stopped:  # the provider will deliver it again, to whoever binds next
            raise ConnectionError("the service is stopping")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((receipt, message, done))
        await asyncio.wait_for(done, self.wait_seconds)  # a timeout cancels it: it is then skipped

    async def serve(self, *, on_receipt: Callable[[R], Awaitable[object]],
                    on_message: Callable[[M], Awaitable[object]], stop: asyncio.Event) -> None:
        """The service's: handle what the channel hands over until `stop` is set.
        Receipts are handled side by side (up to `RECEIPTS_AT_ONCE`: each waits for its
        own store write, and a status only moves forward, so their order does not
        matter); messages one after another, in the order they came (a STOP, then a
        START)."""
        stopping = asyncio.ensure_future(stop.wait())
        room = asyncio.Semaphore(RECEIPTS_AT_ONCE)
        running: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                got = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({got, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    got.cancel()
                    break
                receipt, message, done = got.result()
                if done.done():
                    continue  # its channel stopped waiting; the provider will send it again
                if receipt is not None:
                    await room.acquire()
                    task = asyncio.create_task(_handle(on_receipt, receipt, done))
                    running.add(task)
                    task.add_done_callback(lambda t: (running.discard(t), room.release()))
                elif message is not None:
                    await _handle(on_message, message, done)
        finally:
            stopping.cancel()
            self._stopped = True
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            while not self._queue.empty():
                *_, done = self._queue.get_nowait()
                if not done.done():
                    done.set_exception(ConnectionError("the service is stopping"))


async def _handle(handler: Callable[[T], Awaitable[object]], item: T, done: asyncio.Future[None]) -> None:
    try:
        await handler(item)
    except Exception as exc:  # the provider is told it failed, and retries
        log.exception("handling what the SMS provider pushed failed")
        if not done.done():
            done.set_exception(exc)
        return
    if not done.done():
        done.set_result(None)
