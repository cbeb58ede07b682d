"""What the store keeps for outgoing webhooks: one queue per subscriber of the lifecycle
events still to deliver to it, each claimed with a lease while it is sent (so that
several instances on one store never send one event at once), and a memory of the events
already delivered or given up, so that an event recorded twice is not queued twice."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, Sequence

from pydantic import BaseModel, ConfigDict

# How long an event delivered (or given up) is remembered per subscriber: queueing the
# same event id again within this is a no-op.
KEEP_FINISHED = timedelta(days=7)


class WebhookDelivery(BaseModel):
    """One event for one subscriber. `body` is the CloudEvent exactly as sent: the same
    bytes, and so the same id, on every attempt."""

    model_config = ConfigDict(frozen=True)

    subscriber: str
    event_id: str
    event_type: str
    body: str
    created_at: datetime
    attempts: int = 0
    last_error: str | None = None


class WebhookStore(Protocol):
    """The per-subscriber webhook queues. Every method raises StoreError when the backend
    cannot be reached (retryable); none raises anything else."""

    async def enqueue_webhooks(self, deliveries: Sequence[WebhookDelivery]) -> int:
        """Queue each, due at its `created_at`, unless its (subscriber, event id) is
        queued or was finished within KEEP_FINISHED; returns how many were new."""

    async def claim_webhooks(self, subscriber: str, owner: str, now: datetime, lease_seconds: float,
                             limit: int) -> list[WebhookDelivery]:
        """Up to `limit` of the subscriber's deliveries due by `now`, earliest due first,
        each leased to `owner` until now + lease: nobody else claims it meanwhile; if the
        owner dies, it is due again when the lease lapses."""

    async def retry_webhook(self, delivery: WebhookDelivery, owner: str, due: datetime) -> bool:
        """Put a claimed delivery back, due at `due`, with its `attempts` and
        `last_error`, if `owner` still holds it; False if not (its lease lapsed and
        another took it, or it was finished)."""

    async def finish_webhook(self, subscriber: str, event_id: str, now: datetime) -> None:
        """Take a delivery out of its queue for good (delivered, refused with 410, or too
        old), remembered until now + KEEP_FINISHED."""

    async def webhook_queue_depths(self) -> dict[str, int]:
        """Deliveries waiting per subscriber (claimed ones included), for every subscriber
        with any queued."""
