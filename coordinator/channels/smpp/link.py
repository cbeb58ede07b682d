"""One TCP connection to the SMSC: its sequence numbers, the requests waiting for their
responses, and whether a request that got no answer was ever written.

That last point is what decides whether a submit_sm may be sent again: SMPP has no
idempotency key, so a request written to a connection that then went away may have
been taken by the SMSC (`SmppInDoubt`), while one that never reached the socket was not
(`SmppNotSent`).

What is sent in one pass of the event loop goes out in one write: a fan-out answers
receipts and sends submit_sm by the hundred per pass, and a system call for each PDU
was a tenth of the service's CPU. A request still waiting for that write when the
connection ends was never written: SmppNotSent.
"""

from __future__ import annotations

import asyncio
import contextlib

from coordinator.errors import SmppInDoubt, SmppNotSent, SmppUnwritten

from .pdu import Pdu

MAX_SEQUENCE = 0x7FFF_FFFF


class Link:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._pending: dict[int, asyncio.Future[Pdu]] = {}
        self._sequence = 0
        self._drain = asyncio.Lock()
        self._out: list[bytes] = []  # PDUs for the next write
        self._unwritten: set[int] = set()  # the requests among them, by sequence number
        self._write_soon: asyncio.Handle | None = None
        self.lost: str | None = None
        """Why the connection ended; None while it is up."""

    def next_sequence(self) -> int:
        self._sequence = self._sequence % MAX_SEQUENCE + 1
        return self._sequence

    def send(self, pdu: Pdu) -> None:
        """Writes `pdu` (a response, or a request whose answer nobody waits for), with
        whatever else is sent in this pass of the loop."""
        if self.lost is not None or self.writer.is_closing():
            raise ConnectionError(f"the connection is closed ({self.lost or 'closing'})")
        self._out.append(pdu.encode())
        if self._write_soon is None:
            self._write_soon = asyncio.get_running_loop().call_soon(self._write)

    def _write(self) -> None:
        self._write_soon = None
        if not self._out or self.lost is not None or self.writer.is_closing():
            return  # what is left is failed by close(): never written
        self.writer.write(b"".join(self._out))
        self._out.clear()
        self._unwritten.clear()

    async def request(self, command: int, body: bytes, timeout: float) -> Pdu:
        """Writes a request and returns its response (or a generic_nack with its
        sequence number). Raises SmppNotSent or SmppInDoubt."""
        sequence = self.next_sequence()
        answer: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self._pending[sequence] = answer
        try:
            try:
                self.send(Pdu(command, 0, sequence, body))
            except ConnectionError as exc:
                raise SmppNotSent(str(exc)) from exc
            self._unwritten.add(sequence)
            try:
                async with self._drain:
                    await self.writer.drain()
                async with asyncio.timeout(timeout):
                    return await answer
            except SmppUnwritten as exc:
                raise SmppNotSent(f"the connection ended before the request was written ({exc})") from exc
            except TimeoutError as exc:
                raise SmppInDoubt(f"no response within {timeout:g} s") from exc
            except ConnectionError as exc:
                raise SmppInDoubt(f"the connection was lost after the request was written ({exc})") from exc
        finally:
            self._pending.pop(sequence, None)

    def answer(self, pdu: Pdu) -> bool:
        """Hands a response to the request waiting for it; False when none is (a late
        answer after a timeout, or a sequence number we never used)."""
        waiting = self._pending.pop(pdu.sequence, None)
        if waiting is None or waiting.done():
            return False
        waiting.set_result(pdu)
        return True

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    async def close(self, reason: str) -> None:
        """Ends the connection; every request still waiting fails as SmppInDoubt if it
        was written, else as SmppNotSent."""
        if self.lost is None:
            self.lost = reason
        if self._write_soon is not None:
            self._write_soon.cancel()
            self._write_soon = None
        for sequence, waiting in self._pending.items():
            if not waiting.done():
                waiting.set_exception(SmppUnwritten(reason) if sequence in self._unwritten else ConnectionError(reason))
        self._pending.clear()
        self._out.clear()
        self._unwritten.clear()
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
