"""What the store keeps about deliveries: each message to each person, its status, and
the outbox it waits in until a worker claims and sends it."""

from __future__ import annotations

from datetime import datetime
from typing import Mapping, Protocol, Sequence

from ...models import Delivery, DeliveryKey
from ..records import Moved, StatusUpdate


class DeliveryStore(Protocol):
    """Deliveries and the outbox. Every method raises StoreError when the backend cannot be
    reached (retryable); `retry_delivery` also raises it for an
    unknown delivery."""

    async def add_delivery(self, delivery: Delivery, due: datetime | None = None) -> bool:
        """Record a delivery unless one with the same key exists, and put it in the
        outbox, due at `due` (now if None); True if it was new."""

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> int:
        """`add_delivery` for many at once (one transaction or round trip); returns how
        many were new."""

    async def claim_deliveries(
        self, owner: str, now: datetime, lease_seconds: float, limit: int, medium: str | None = None
    ) -> list[Delivery]:
        """Up to `limit` outbox deliveries due by `now`, oldest first, each leased to
        `owner` until now + lease: no one else gets it meanwhile, and if the owner dies
        the lease lapses and it is due again. `medium` ("sms", "email") claims only
        deliveries on that medium (`DeliveryKey.medium`), so each channel has its own
        queue and moves at its own pace."""

    async def renew_claims(self, owner: str, keys: Sequence[DeliveryKey], until: datetime) -> None:
        """Extend the leases of deliveries `owner` still holds (claimed, not finished)
        to `until`: a live worker keeps its claims however long they wait for a send
        slot, and a dead worker's lapse after one short lease."""

    async def finish_delivery(self, key: DeliveryKey) -> None:
        """Take a delivery out of the outbox for good (sent, or failed for good)."""

    async def retry_delivery(self, key: DeliveryKey, due: datetime, *, attempts: int, error: str) -> None:
        """Put a claimed delivery back in the outbox, due at `due`, noting the attempt."""

    async def outbox_size(self) -> int: ...

    async def delivery_by_provider(self, provider_id: str) -> Delivery | None:
        """The delivery a provider id (Twilio SID, Message-ID) belongs to."""

    async def get_delivery(self, key: DeliveryKey) -> Delivery | None: ...

    async def update_deliveries(self, updates: Sequence[StatusUpdate]) -> list[Moved]:
        """Many status updates in one transaction (SQLite) or one script call (Redis),
        applied in order: a status at or below the current one's rank (a repeated or
        late callback) does not move it; a status only moves forward.
        A provider id is recorded even when the status does not move (a callback may
        have moved it first), and an update with `finish` also takes the delivery out of
        the outbox. One answer per update; `Moved(None, False)` for an unknown delivery.
        Keeps the SMS indexes of `SmsStore` (`rules.apply_update` is the rule)."""

    async def deliveries(self, incident_id: str) -> list[Delivery]: ...

    async def unacknowledged(self, versions: Mapping[str, int]) -> dict[str, int]:
        """Per incident id, how many people were sent script version `versions[id]` (a
        script delivery of it, any medium, any status) and have not acknowledged it:
        counted in the store, without reading the deliveries out (GET /metrics)."""

    async def oldest_claim(self) -> datetime | None:
        """The first-claim time of the longest-claimed delivery still in the outbox
        (claimed at least once, not finished: sending, or waiting for a retry); None
        when there is none."""
