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
        """The service's: handle what the channel hands over until `stop` is set."""
        stopping = asyncio.ensure_future(stop.wait())
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
                try:
                    if receipt is not None:
                        await on_receipt(receipt)
                    elif message is not None:
                        await on_message(message)
                except Exception as exc:  # the provider is told it failed, and retries
                    log.exception("handling what the SMS provider pushed failed")
                    if not done.done():
                        done.set_exception(exc)
                    continue
                if not done.done():
                    done.set_result(None)
        finally:
            stopping.cancel()
            self._stopped = True
            while not self._queue.empty():
                *_, done = self._queue.get_nowait()
                if not done.done():
                    done.set_exception(ConnectionError("the service is stopping"))
