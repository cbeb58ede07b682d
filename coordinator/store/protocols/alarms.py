"""What the store keeps about network alarms: each alarm's state (one per source and
dedup key), so that a repeated firing attaches once across instances and restarts."""

from __future__ import annotations

from typing import Protocol

from ...alarms.decisions import AlarmState


class AlarmStore(Protocol):
    """Alarm states, saved by revision. Every method raises StoreError when the backend
    cannot be reached (retryable); none raises anything else."""

    async def get_alarm(self, source: str, key: str) -> AlarmState | None:
        """The state of the alarm `key` of `source`, or None if it never fired here."""

    async def save_alarm(self, alarm: AlarmState) -> bool:
        """Store `alarm` if the stored state's revision is `alarm.revision - 1` (none stored
        for revision 1): True. False when another writer got there first (nothing stored)."""

    async def incident_alarms(self, incident_id: str) -> list[AlarmState]:
        """Every alarm whose current state names `incident_id`, oldest firing first."""
