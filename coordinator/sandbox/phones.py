"""The staff phones behind the sandbox SMSC, as the sandbox page shows them: each phone's
conversation (what it received, joined as the phone shows it, and what it replied), the
messages by status, and a reply typed on the page sent to the service as the SMSC
delivers one. The Twilio sandbox keeps the same three views of its own messages."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from ..channels.smpp.receipts import STAT_STATUS, message_status
from ..clock import Clock
from ..models import DeliveryStatus
from .messages import is_e164
from .smsc import SandboxSmsc

FINAL_FAILURES = (DeliveryStatus.failed, DeliveryStatus.undelivered)


@dataclass(frozen=True)
class PhoneMessage:
    date_created: datetime
    direction: str  # "outbound" or "inbound"
    from_: str
    to: str
    body: str
    status: str
    error_code: str | None = None
    messaging_service_sid: None = None


class SmscPhones:
    def __init__(self, smsc: SandboxSmsc, *, source_addr: str, clock: Clock) -> None:
        self.smsc = smsc
        self.source_addr = source_addr
        self._clock = clock
        self._replies: list[PhoneMessage] = []

    @property
    def base_url(self) -> str:
        return f"smpp://127.0.0.1:{self.smsc.port}"

    def _sent(self) -> list[PhoneMessage]:
        out = []
        for m in self.smsc.messages:
            stats = [self.smsc.stat(i) for i in m.message_ids]
            status = message_status(STAT_STATUS.get(s) if s else None for s in stats)
            failed = next((s for s in stats if s and STAT_STATUS.get(s) in FINAL_FAILURES), None)
            out.append(PhoneMessage(m.taken_at or self._clock.now(), "outbound", m.source, _phone(m.destination),
                                    m.text, status.value, failed))
        return out

    def threads(self) -> dict[str, list[PhoneMessage]]:
        """Each staff phone's conversation, oldest first."""
        threads: dict[str, list[PhoneMessage]] = {}
        for m in sorted([*self._sent(), *self._replies], key=lambda m: m.date_created):
            threads.setdefault(m.from_ if m.direction == "inbound" else m.to, []).append(m)
        return threads

    def counts(self) -> Counter[str]:
        return Counter(m.status for m in self._sent())

    async def reply(self, from_number: str, to_number: str, body: str) -> PhoneMessage:
        """The phone `from_number` texts our number: the SMSC delivers it to the service."""
        if to_number != self.source_addr:
            raise ValueError(f"{to_number} is not the service's number ({self.source_addr})")
        if not is_e164(from_number):
            raise ValueError(f"{from_number} is not an E.164 number")
        message = PhoneMessage(self._clock.now(), "inbound", from_number, to_number, body, "received")
        self._replies.append(message)
        statuses = await self.smsc.inject_mo(from_number, to_number, body, ucs2=not body.isascii())
        if any(statuses):
            raise ValueError(f"the service refused the reply (command_status {statuses})")
        return message

    def received_by(self, phone: str) -> list[PhoneMessage]:
        return [m for m in self.threads().get(_phone(phone), []) if m.direction == "outbound"]

    async def settled(self, timeout: float = 10.0) -> None:
        """Returns once every message taken has its receipt."""
        await self.smsc.wait_for(lambda: all(self.smsc.stat(i) is not None for m in self.smsc.messages
                                             for i in m.message_ids), timeout)

    async def stop(self) -> None:
        await self.smsc.stop()


def _phone(address: str) -> str:
    return address if address.startswith("+") else f"+{address}"
