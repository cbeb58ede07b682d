"""The old home of the store protocol and its helpers, kept as an import path while
coordinator/outbox.py still imports it. New code imports from .protocols, .records and
.rules."""

from __future__ import annotations

from .protocols import Store
from .records import ACCEPTED, MEDIA, Added, CountKind, Moved, StatRow, StatusUpdate
from .rules import ack_id, ack_key, apply_update, claimed, medium_of, related_to

__all__ = ["ACCEPTED", "MEDIA", "Added", "CountKind", "Moved", "StatRow", "StatusUpdate", "Store", "ack_id",
           "ack_key", "apply_update", "claimed", "medium_of", "related_to"]
