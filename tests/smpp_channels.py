"""SMPP channels for tests: quick timings, and an opener that closes what it opened."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

from coordinator.channels.smpp import DeliveryReport, SmppConfig, SmppSms
from coordinator.clock import ManualClock
from coordinator.sandbox.smsc import SandboxSmsc

# Short keep-alives, timeouts and back-offs, so a test sees several of each in well under a second.
FAST: dict[str, Any] = dict(
    host="127.0.0.1", system_id="sandbox", password="secret", source_addr="1065712345",
    enquire_link_seconds=0.05, response_timeout_seconds=0.5, connect_timeout_seconds=1.0,
    reconnect_min_seconds=0.02, reconnect_max_seconds=0.1, throttle_min_seconds=0.02, throttle_max_seconds=0.1,
)


class Listener(Protocol):
    """Where a channel hands receipts and replies (a test's recorder)."""

    def receipt(self, report: DeliveryReport) -> Awaitable[None]: ...
    def reply(self, message: Any) -> Awaitable[None]: ...


class Channels:
    """Opens SMPP channels to a sandbox SMSC with FAST settings; `close` closes them all."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.opened: list[SmppSms] = []

    def open(self, smsc: SandboxSmsc, listener: Listener, **overrides: Any) -> SmppSms:
        channel = SmppSms(SmppConfig(**{**FAST, "port": smsc.port, **overrides}), on_receipt=listener.receipt,
                          on_reply=listener.reply, clock=self.clock)
        self.opened.append(channel)
        return channel

    async def close(self) -> None:
        for channel in self.opened:
            await channel.close()


OpenChannel = Callable[..., SmppSms]
