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
from .models import Incident, TimelineEvent
from .store import IncidentStore

Change = Callable[[Incident], tuple[Incident, list[TimelineEvent]]]


class IncidentUpdates:
    def __init__(self, *, store: IncidentStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def update(self, incident_id: str, change: Change, attempts: int = 100) -> Incident:
        """Apply `change` to the latest copy and save it; on a concurrent save, read again
        and apply again, after a short random pause so that contenders spread out (a
        surge storm attaches many times at once). Events are appended after the save."""
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
            return saved
        raise Conflict(f"incident {incident_id} (after {attempts} attempts)")

    async def ack_role(self, incident_id: str, person: str, role: str | None = None, via: str = "api") -> Incident:
        """`person` acknowledges `role`, or every role whose chain up to now names them.
        The leader's acknowledgement (the playbook's first role) makes the incident
        acknowledged."""
        now = self.clock.now()
        return await self.update(incident_id, lambda inc: changes.ack_roles(inc, now, person, role, via))
