"""What the store keeps about complaints: the complaints, their per-stream bucket counts,
each stream's detector state and open surge, the surge record, and hourly statistics.

Complaint statistics are kept per UTC hour rather than per day in the operator's time
zone: every writer (intake, `replay --store`, drills, other instances) stores complaints
without knowing the configured zone, and a change of COORDINATOR_TIMEZONE should not
leave history bucketed by the old one. coordinator/reports/stats.py rolls hours up into local
days when reading; that is exact for every zone whose UTC offset is a whole number of
hours (all of China, and DST zones too)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol, Sequence

from ...models import Complaint, Surge
from ..records import Added, CountKind, StatRow


class ComplaintStore(Protocol):
    """Complaints and what is counted from them. Every method raises StoreError when the
    backend cannot be reached (retryable); none raises anything else."""

    bucket_seconds: int

    async def add_complaints(
        self, complaints: Sequence[Complaint], repeat_window: timedelta = timedelta(days=7)
    ) -> list[Added]:
        """Store each complaint unless its id is already stored (also earlier in the same
        batch) and count the new ones into their streams' buckets, atomically per
        complaint: a complaint is counted exactly when it is stored. A new complaint
        whose subscriber complained before, at most `repeat_window` earlier, is a repeat
        and also counts into its streams' repeat counts. Returns, per input, whether it
        was new and whether it was a repeat."""

    async def get_complaint(self, complaint_id: str) -> Complaint | None: ...

    async def count_complaints(self) -> int: ...

    async def bucket_counts(
        self, stream: str, start: datetime, end: datetime, kind: CountKind = "all"
    ) -> dict[int, int]:
        """Non-zero counts of `stream` by bucket start (epoch seconds), start <= t < end:
        of all its complaints, of the repeats, or of those from the regulator channel."""

    async def bucket_counts_many(
        self, streams: Sequence[str], start: datetime, end: datetime, kind: CountKind = "all"
    ) -> dict[str, dict[int, int]]:
        """`bucket_counts` of several streams in one round trip; every stream asked for is
        a key, with {} when it has no counts in the range."""

    async def stream_names(self) -> list[str]: ...

    async def load_stream_state(self, stream: str) -> tuple[dict[str, Any] | None, int]:
        """The detector state saved for `stream` and its version (0: none yet)."""

    async def save_stream_state(self, stream: str, state: dict[str, Any], version: int) -> bool:
        """Save `state` as version `version` if the stored one is `version - 1`; False if
        another instance saved first (then load and redo)."""

    async def open_stream_surge(self, surge: Surge) -> bool:
        """Mark a surge open on its stream unless one is: True for the one instance that
        reports it."""

    async def stream_surge(self, stream: str) -> Surge | None: ...

    async def close_stream_surge(self, stream: str) -> None: ...

    async def record_surge(self, surge: Surge) -> None: ...

    async def surges(self, *, key: str | None = None, since: datetime | None = None) -> list[Surge]:
        """Recorded surges, oldest first, optionally of one stream and from a time on."""

    async def complaint_stats(self, start: datetime, end: datetime) -> list[StatRow]:
        """Counts and repeats of real (not drill) complaints per UTC hour, category,
        region and channel, for the hours start <= hour < end, oldest first; kept by
        `add_complaints` (complaints stored before these counts existed are not in them)."""
