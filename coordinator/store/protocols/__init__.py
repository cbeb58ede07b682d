"""The store's protocols: one per thing it keeps, and `Store`, all of them together.

A consumer takes the narrowest one it uses. Two backends implement them all
(store/sqlite/, store/redis/) and one contract suite runs against both. Every method
raises StoreError when the backend cannot be reached (retryable); each protocol's
docstring names what else its methods raise (IncidentNotFound, Conflict)."""

from __future__ import annotations

from typing import Protocol

from .access import AccessStore
from .alarms import AlarmStore
from .complaints import ComplaintStore
from .deliveries import DeliveryStore
from .drills import DrillStore
from .incidents import IncidentStore
from .instances import InstanceStore
from .sms import SmsStore
from .webhooks import WebhookStore

__all__ = ["AccessStore", "ComplaintStore", "DeliveryStore", "DrillStore", "IncidentStore", "SmsStore", "Store",
           "WebhookStore", "InstanceStore", "AlarmStore", "PROTOCOLS"]


class Store(ComplaintStore, IncidentStore, DeliveryStore, SmsStore, DrillStore, AccessStore, WebhookStore,
            InstanceStore, AlarmStore, Protocol):
    """Everything the service keeps, for the code that wires it (app, CLI)."""

    bucket_seconds: int
    # True when no other process writes to the same store (SQLite): readers may cache.
    single_process: bool

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError unless the backend answers."""


PROTOCOLS = (ComplaintStore, IncidentStore, DeliveryStore, SmsStore, DrillStore, AccessStore, WebhookStore, InstanceStore,
             AlarmStore)
