"""What the store keeps for SMS beyond the deliveries themselves: the index replies are
matched through, the messages whose final status is still to be looked up, and the
recipients who replied STOP."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, Sequence

from ...models import Delivery, DeliveryKey


class SmsStore(Protocol):
    """SMS indexes and opt-outs. Every method raises StoreError when the backend cannot be
    reached (retryable); none raises anything else."""

    async def sms_sent_to(self, phone: str, limit: int = 20) -> list[Delivery]:
        """The SMS deliveries a provider accepted for `phone`, the last recorded first: the
        index an SMS reply is matched through. Kept by `update_deliveries` (an update
        with `finish` and an accepted status; recorded once per delivery)."""

    async def unsettled_sms(self, before: datetime, limit: int) -> list[Delivery]:
        """SMS deliveries still `sent` (accepted, no final status yet) whose check time is
        at or before `before`, earliest first. An SMS enters this index with its move
        to `sent` (check time: that moment) and leaves it when its status moves on."""

    async def defer_unsettled(self, keys: Sequence[DeliveryKey], until: datetime | None) -> None:
        """Move their check time to `until`; None takes them out of the index (given up)."""

    async def set_opt_out(self, phone: str, opted_out: bool) -> None:
        """Mirror a recipient's STOP (True) or START (False) reply."""

    async def opted_out(self) -> set[str]:
        """Phones that replied STOP and not START since."""
