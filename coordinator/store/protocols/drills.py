"""What the store keeps about drills: their runs, each drill's schedule cursor, and the
leases that make one instance the drill scheduler."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from ...models import DrillRun


class DrillStore(Protocol):
    """Drill runs, cursors and leases. Every method raises StoreError when the backend
    cannot be reached (retryable); `save_drill_run` raises Conflict on a stale revision."""

    async def create_drill_run(self, run: DrillRun) -> bool:
        """Record a new run; False if a run with its id exists (a scheduled firing's id is
        the drill and its time, so it runs once however many instances see it due)."""

    async def save_drill_run(self, run: DrillRun) -> None:
        """Replace a run whose stored revision is `run.revision - 1`, else raise Conflict."""

    async def get_drill_run(self, run_id: str) -> DrillRun | None: ...

    async def drill_runs(self, drill_id: str | None = None) -> list[DrillRun]:
        """Runs, newest first, of one drill or of all."""

    async def drill_cursor(self, drill_id: str) -> datetime | None:
        """The drill's next firing not yet handled (None before the scheduler first saw it)."""

    async def move_drill_cursor(self, drill_id: str, expected: datetime | None, new: datetime) -> bool:
        """Set the cursor to `new` if it is still `expected`: True for the one instance
        that handles the firings in between."""

    async def acquire_lease(self, name: str, owner: str, now: datetime, seconds: float) -> bool:
        """Hold lease `name` for `owner` until now + seconds: True if it was free, lapsed, or
        already `owner`'s (a renewal); False while someone else holds it."""
