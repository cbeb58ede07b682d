"""What the store keeps about access: the service's generated secrets, server-side
sessions (so signing out ends a session everywhere, not just in one browser) and failed
sign-in counts (so guessing passwords slows down across every instance sharing it)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class AccessStore(Protocol):
    """Secrets, sessions and sign-in failures. Every method raises StoreError when the
    backend cannot be reached (retryable); none raises anything else."""

    async def get_or_create_secret(self, name: str, candidate: str) -> str:
        """The secret stored under `name`; stores `candidate` first if there is none, so
        every instance sharing the store ends up with the same value."""

    async def start_session(self, session_id: str, user: str, stamp: str, now: datetime, expires: datetime) -> None:
        """Record a signed-in session; `stamp` fingerprints the user's credentials then, so
        a password change ends every session begun before it. Drops expired sessions."""

    async def session_holder(self, session_id: str, now: datetime) -> tuple[str, str] | None:
        """(user, stamp) of a live session; None once it ended or expired."""

    async def end_session(self, session_id: str) -> None: ...

    async def end_sessions_of(self, user: str) -> int:
        """End every session of `user` (removed, or a new password); how many ended."""

    async def note_login_failure(self, key: str, now: datetime, forget_after: float) -> int:
        """Count one failed sign-in under `key` (a user or an address); the count restarts
        once no failure came for `forget_after` seconds. Returns the new count."""

    async def login_failures(self, key: str, now: datetime, forget_after: float) -> tuple[int, datetime | None]:
        """(failures, time of the last) under `key`; (0, None) once forgotten."""

    async def clear_login_failures(self, key: str) -> None: ...
