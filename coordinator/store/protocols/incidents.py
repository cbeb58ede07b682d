"""What the store keeps about incidents: the incidents, their timelines, the timed steps
workers claim, and the acknowledgements."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, Sequence

from ...models import Ack, Incident, TimelineEvent


class IncidentStore(Protocol):
    """Incidents and what happens to them. Every method raises StoreError when the backend
    cannot be reached (retryable); those naming one incident raise IncidentNotFound for an
    unknown id where stated, and `save_incident` raises Conflict on a stale revision."""

    async def open_incident(
        self, incident: Incident, event: TimelineEvent, *, related: bool = False
    ) -> tuple[Incident, bool]:
        """Create `incident` with `event` as the first entry of its timeline, unless an open
        incident with the same surge_key exists, or with `related` an open incident of
        the same event seen through the other stream (`related_to`): then return that
        one (the oldest) and False. Atomic across every instance sharing the store, so
        a regional and a category-wide surge reported at once open one incident. Raises
        StoreError if the id itself exists (a caller bug)."""

    async def get_incident(self, incident_id: str) -> Incident:
        """Raises IncidentNotFound for an unknown id."""

    async def save_incident(self, incident: Incident) -> None:
        """Replace a stored incident whose revision is `incident.revision - 1`, else raise
        Conflict (someone saved meanwhile), or IncidentNotFound. When it is no longer
        open its surge key is freed."""

    async def list_incidents(
        self, *, open_only: bool | None = None, drill: bool | None = None, playbook: str | None = None
    ) -> list[Incident]:
        """Incidents, newest first, filtered."""

    async def append_timeline(self, incident_id: str, event: TimelineEvent) -> None:
        """Raises IncidentNotFound for an unknown id."""

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        """The incident's events, oldest first (append order)."""

    # Timed steps: timers are data, each due step claimed by one worker.

    async def claim_step(self, incident_id: str, key: str, owner: str, now: datetime, lease_seconds: float) -> bool:
        """Claim step `key` of an incident for `owner` until now + lease. True when it is
        not done and nobody else holds an unexpired claim (a crashed worker's claim
        lapses with its lease)."""

    async def finish_step(self, incident_id: str, key: str) -> None:
        """Mark a claimed step done for good."""

    async def finished_steps(self, incident_id: str) -> set[str]: ...

    async def record_ack(self, ack: Ack, event: TimelineEvent | None = None) -> bool:
        """Record an acknowledgement; the first per (incident, person, version, role) wins.
        A new one's `event` is appended to the incident's timeline in the same write.
        True if it was new."""

    async def acks(self, incident_id: str) -> list[Ack]:
        """The incident's acknowledgements, oldest first."""

    async def acked_versions(self, incident_id: str, person_id: str, versions: Sequence[int]) -> set[int]:
        """Which of `versions` the person has acknowledged (point lookups: an SMS reply
        must not read every acknowledgement of a 10,000-person fan-out)."""
