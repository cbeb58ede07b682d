"""The SMSC side of the SMPP benchmark: the project's SandboxSmsc, run in the provider
process (providers.py `--smsc`) beside the SMTP inbox, so that the service and the
SMSC each have a core of their own, as the service and the Twilio sandbox do.

Commands (after the word `smsc` on the provider process's stdin), one JSON line each:

    smsc stats           submit_sm taken (and when), throttled, dropped, receipts answered
    smsc settle          waits until every receipt was answered, then answers stats
    smsc tally MARK      per destination, the messages whose text holds MARK, and their parts
    smsc drop-after N    take the next N submit_sm as usual, then read one, keep it and
                         close the connection without answering (a connection lost mid
                         fan-out with a submit_sm in doubt)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from coordinator.clock import SystemClock
from coordinator.sandbox.smsc import SandboxSmsc

SYSTEM_ID = "bench"
PASSWORD = "bench-pw"
SOURCE_ADDR = "1065712345"


class SmscSide:
    def __init__(self, *, receipt_delay: float, throttle_rate: float) -> None:
        self.smsc = SandboxSmsc(clock=SystemClock(), system_id=SYSTEM_ID, password=PASSWORD,
                                receipt_delay=receipt_delay, throttle_rate=throttle_rate)

    @property
    def port(self) -> int:
        return self.smsc.port

    async def start(self) -> None:
        await self.smsc.start()

    async def stop(self) -> None:
        await self.smsc.stop()

    async def command(self, words: list[str]) -> dict[str, Any]:
        what = words[0] if words else "stats"
        if what == "settle":
            await self.smsc.settled(timeout=300)
        elif what == "tally":
            return self.tally(words[1])
        elif what == "drop-after":
            self.smsc.pass_next(int(words[1]))
            self.smsc.drop_next(taken=True)
        return self.stats()

    def stats(self) -> dict[str, Any]:
        s = self.smsc
        return {
            "parts": len(s.parts), "messages": len(s.messages), "throttled": s.throttled, "dropped": s.dropped,
            "receipts": s.receipts, "binds": s.binds,
            # When each submit_sm was taken (seconds since the epoch, by the SMSC's clock):
            # the benchmark's rates are read from these.
            "taken_at": [p.taken_at.timestamp() for p in s.parts if p.taken_at is not None],
        }

    def tally(self, mark: str) -> dict[str, Any]:
        """Per destination: how many whole messages with `mark` in their text it got, and
        how many parts of such messages the SMSC took (a message whose last part never
        came is not whole)."""
        messages = Counter(m.destination for m in self.smsc.messages if mark in m.text)
        parts = Counter(p.message.destination_addr for p in self.smsc.parts)
        return {"messages": dict(messages), "parts": dict(parts)}
