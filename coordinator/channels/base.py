"""What the outbox sees of a delivery channel: a send that is accepted or raises SendError
saying whether to retry, fall back to the other channel, or stop.

Implementations live side by side (`sms.py`, `email.py`) and only translate: nothing
here decides when to retry or which channel to fall back to; the outbox does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..models import DeliveryStatus


@dataclass(frozen=True)
class Accepted:
    """The provider took the message."""

    provider_id: str
    """Twilio's message SID, or the email's Message-ID (with its angle brackets)."""
    status: str
    """Twilio's status as answered ("queued", "accepted", "sent", ...), or "sent" for an
    email the SMTP server took."""


class SmsChannel(Protocol):
    async def send_sms(self, delivery_id: str, to: str, text: str, *, since: datetime | None = None) -> Accepted:
        """Send `text` to `to` (E.164) once per `delivery_id`, as far as the provider
        allows: a retry after an unclear outcome looks for the first attempt's message
        before sending again. `since`: an earlier attempt, perhaps by another worker that
        died, may have sent it since then, so look for it first. Raises SendError."""
        ...

    async def status_of(self, delivery_id: str, provider_id: str) -> DeliveryStatus:
        """The message's status at the provider now (a look-up for a status callback
        that never came). Raises SendError."""
        ...

    async def close(self) -> None: ...


class EmailChannel(Protocol):
    async def send_email(
        self, delivery_id: str, to: str, subject: str, text: str, html: str, *, ack_url: str | None
    ) -> Accepted:
        """Send the script (`text` and `html`, unchanged) to `to`, with the
        acknowledgement link `ack_url` added outside it. Every send of one `delivery_id`
        carries the same Message-ID. Raises SendError."""
        ...

    async def close(self) -> None: ...
