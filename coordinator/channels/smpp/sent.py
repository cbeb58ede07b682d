"""The messages this channel sent, part by part, for their receipts: an SMSC reports
each part of a concatenated message on its own, and the person has the script only
when every part arrived.

Time is passed in. A receipt can arrive before the send that caused it has finished
(the SMSC answers part 1, then reports it delivered while part 2 is still being
sent), so a receipt for a part not known yet waits a while for its message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from coordinator.models import DeliveryStatus

from .receipts import Receipt, advance, message_status

PART_SEPARATOR = ","  # between the parts' message ids in a provider_id; SMSC ids are alphanumeric
WAIT_FOR_MESSAGE = timedelta(minutes=5)


@dataclass(frozen=True)
class DeliveryReport:
    """A message's status moved (forward only)."""

    provider_id: str
    """As `send_sms` returned it (the parts' ids joined by ","); for a message this
    process did not send (one sent before a restart), the receipt's own message id."""
    status: DeliveryStatus
    error: str | None
    """The receipt's stat and err for a message not delivered ("UNDELIV:001"), else None."""
    delivery_id: str | None
    """The delivery it was sent for; None when this process did not send it."""


@dataclass
class SentMessage:
    provider_id: str
    delivery_id: str
    sent_at: datetime
    parts: dict[str, DeliveryStatus | None]
    status: DeliveryStatus = DeliveryStatus.sent
    error: str | None = None


@dataclass(frozen=True)
class _Waiting:
    receipt: Receipt
    since: datetime


def provider_id(part_ids: list[str]) -> str:
    return PART_SEPARATOR.join(part_ids)


def part_ids(provider_id: str) -> list[str]:
    return provider_id.split(PART_SEPARATOR)


class SentMessages:
    def __init__(self, *, keep_for: timedelta) -> None:
        self._keep_for = keep_for
        self._messages: dict[str, SentMessage] = {}
        self._message_of_part: dict[str, str] = {}
        self._message_of_delivery: dict[str, str] = {}
        self._waiting: dict[str, _Waiting] = {}

    def add(self, delivery_id: str, ids: list[str], now: datetime) -> tuple[str, list[DeliveryReport]]:
        """Remembers a message sent as the parts `ids`; returns its provider_id and what
        the receipts that came before it already say."""
        message = SentMessage(provider_id(ids), delivery_id, now, {part: None for part in ids})
        self._messages[message.provider_id] = message
        self._message_of_delivery[delivery_id] = message.provider_id
        reports: list[DeliveryReport] = []
        for part in ids:
            self._message_of_part[part] = message.provider_id
            if (early := self._waiting.pop(part, None)) is not None:
                reports += self.receipt(early.receipt, now)
        return message.provider_id, reports

    def get(self, provider_id: str) -> SentMessage | None:
        return self._messages.get(provider_id)

    def provider_of(self, part_id: str) -> str | None:
        """The provider_id of the message one of whose parts the SMSC calls `part_id`."""
        return self._message_of_part.get(part_id)

    def sent_for(self, delivery_id: str) -> SentMessage | None:
        """The message sent for `delivery_id`, if this process sent one lately."""
        provider = self._message_of_delivery.get(delivery_id)
        return None if provider is None else self._messages.get(provider)

    def receipt(self, receipt: Receipt, now: datetime) -> list[DeliveryReport]:
        """The report a receipt makes, if it moves its message's status; a receipt for
        a part not known yet waits for `add` (or `expire`)."""
        known = self._message_of_part.get(receipt.message_id)
        if known is None:
            self._waiting.pop(receipt.message_id, None)  # to the end: `expire` reads them oldest first
            self._waiting[receipt.message_id] = _Waiting(receipt, now)
            return []
        message = self._messages[known]
        current = message.parts[receipt.message_id]
        message.parts[receipt.message_id] = advance(current or DeliveryStatus.sent, receipt.status)
        moved = advance(message.status, message_status(message.parts.values()))
        if moved == message.status:
            return []
        message.status = moved
        if moved in (DeliveryStatus.undelivered, DeliveryStatus.failed):
            message.error = receipt.error_code
        return [DeliveryReport(message.provider_id, moved, message.error, message.delivery_id)]

    def unreported(self, report: DeliveryReport) -> None:
        """`report` could not be handed on (the service failed or was too slow): the SMSC
        delivers its receipt again later, and that receipt must make the report again.
        Only final statuses are reported, so the message goes back to sent."""
        message = self._messages.get(report.provider_id)
        if message is not None and message.status == report.status:
            message.status = DeliveryStatus.sent

    def expire(self, now: datetime) -> list[DeliveryReport]:
        """Forgets messages older than `keep_for`, and gives up waiting for the message of
        a receipt after WAIT_FOR_MESSAGE: it was sent before this process started, and is
        reported under the receipt's own message id.

        Both dicts are in the order things were added, i.e. oldest first, so only the
        expired ones and the first that is not are looked at: this runs on every
        receipt, and a scan of every message sent made a 10,000-person fan-out
        quadratic (a third of the service's CPU)."""
        while self._messages:
            old = next(iter(self._messages.values()))
            if now - old.sent_at <= self._keep_for:
                break
            del self._messages[old.provider_id]
            if self._message_of_delivery.get(old.delivery_id) == old.provider_id:
                del self._message_of_delivery[old.delivery_id]
            for part in old.parts:
                self._message_of_part.pop(part, None)
        reports: list[DeliveryReport] = []
        while self._waiting:
            message_id, waiting = next(iter(self._waiting.items()))
            if now - waiting.since <= WAIT_FOR_MESSAGE:
                break
            del self._waiting[message_id]
            if (status := waiting.receipt.status) is not None:
                reports.append(DeliveryReport(message_id, status, waiting.receipt.error_code, None))
        return reports
