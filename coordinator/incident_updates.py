"""How an incident changes: a change is a pure function of the latest copy, applied with
compare-and-set and retried on a concurrent save. The pipeline and the script side both
change incidents through this one object, built before either, so neither needs the
other to do it (the role acknowledgement an SMS reply makes is here for that reason)."""

from __future__ import annotations

import asyncio
import random
from typing import Callable

from . import changes
from .clock import Clock
from .errors import Conflict
from .webhooks.events import LifecycleEvents
from .models import Incident, TimelineEvent
from .store import IncidentStore

Change = Callable[[Incident], tuple[Incident, list[TimelineEvent]]]


class IncidentUpdates:
    def __init__(self, *, store: IncidentStore, clock: Clock, lifecycle: LifecycleEvents) -> None:
        """`lifecycle`: told of every change's events once they are saved (webhooks)."""
        self.store = store
        self.clock = clock
        self.lifecycle = lifecycle

    async def update(self, incident_id: str, change: Change, attempts: int = 100) -> Incident:
        """Apply `change` to the latest copy and save it; on a concurrent save, read again
        and apply again, after a short random pause so that contenders spread out (a
        surge storm attaches many times at once). Events are appended after the save,
        then announced (the revision saved keys them)."""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * attempt)))
            current = await self.store.get_incident(incident_id)
            changed, events = change(current)
            if changed == current and not events:
                return current
            saved = changed.model_copy(update={"revision": current.revision + 1, "updated_at": self.clock.now()})
            try:
                await self.store.save_incident(saved)
            except Conflict:
                continue
            for event in events:
                await self.store.append_timeline(incident_id, event)
            await self.announce(saved, events, f"r{saved.revision}")
            return saved
        raise Conflict(f"incident {incident_id} (after {attempts} attempts)")

    async def announce(self, incident: Incident, events: list[TimelineEvent], key: str) -> None:
        """Events appended to the incident's timeline outside a change (its opening, a
        publication), told to subscribers: the one place lifecycle events leave from.
        `key` names them within the incident, the same whoever announces them."""
        await self.lifecycle.incident(incident, events, key)

    async def ack_role(self, incident_id: str, person: str, role: str | None = None, via: str = "api") -> Incident:
        """`person` acknowledges `role`, or every role whose chain up to now names them.
        The leader's acknowledgement (the playbook's first role) makes the incident
        acknowledged."""
        now = self.clock.now()
        return await self.update(incident_id, lambda inc: changes.ack_roles(inc, now, person, role, via))
