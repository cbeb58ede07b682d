"""Password checks that cannot be used to guess passwords or to burn the CPU.

Failed sign-ins are counted per user name and per client address, in the store (so every
instance sharing it sees them). After `free` failures each new attempt waits twice as
long as the one before; at `lockout_after` the name or address is locked for
`lockout_seconds`, and the audit log says so. While a wait runs the password is not even
checked: a right password is refused too, or throttling would only slow the guessing.
argon2 is slow on purpose, so at most `concurrency` hashes run at once and a crowd of
attempts beyond `queue` is turned away at once instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from ..clock import Clock
from ..store import AccessStore
from ..config.users import Directory, User

log = logging.getLogger(__name__)
audit = logging.getLogger("coordinator.audit")


@dataclass(frozen=True)
class Backoff:
    free: int = 5
    base_seconds: float = 2.0
    cap_seconds: float = 300.0
    lockout_after: int = 20
    lockout_seconds: float = 900.0
    # Failures are forgotten this long after the last one (longer than the lockout).
    forget_after: float = 3600.0

    def wait(self, failures: int, last_at: datetime | None, now: datetime) -> float:
        """Seconds until another attempt may be checked (0: now)."""
        if last_at is None or failures < self.free:
            return 0.0
        if failures >= self.lockout_after:
            delay = self.lockout_seconds
        else:
            delay = min(self.cap_seconds, self.base_seconds * 2 ** (failures - self.free))
        return max(0.0, delay - (now - last_at).total_seconds())


@dataclass(frozen=True)
class Attempt:
    user: User | None
    retry_after: float = 0.0  # > 0: throttled, the password was not checked
    busy: bool = False  # too many checks at once, the password was not checked


def shown_name(directory: Directory, name: str) -> str:
    """A name fit for a log: a known user's name; anything else (a password typed into the
    name field, say) only as a short hash."""
    if directory.get(name) is not None:
        return name
    return "unknown#" + _digest(name)[:10]


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]


class Logins:
    def __init__(self, store: AccessStore, clock: Clock, directory: Directory, backoff: Backoff,
                 concurrency: int, queue: int) -> None:
        self.store = store
        self.clock = clock
        self.directory = directory
        self.backoff = backoff
        self._hashing = asyncio.Semaphore(concurrency)
        self._queue = queue
        self._waiting = 0

    async def attempt(self, name: str, password: str, address: str) -> Attempt:
        # The name as typed may be a password typed in the wrong field: only its digest is kept.
        keys = (f"user:{_digest(name)}", f"addr:{address}")
        now = self.clock.now()
        waits = [self.backoff.wait(*await self.store.login_failures(k, now, self.backoff.forget_after), now)
                 for k in keys]
        if max(waits) > 0:
            log.warning("sign-in of %s from %s throttled for %.0f s", shown_name(self.directory, name), address,
                        max(waits))
            return Attempt(None, retry_after=max(waits))
        if self._waiting >= self._queue:
            return Attempt(None, busy=True)
        self._waiting += 1
        try:
            async with self._hashing:
                user = await asyncio.to_thread(self.directory.check_password, name, password)
        finally:
            self._waiting -= 1
        if user is not None:
            for key in keys:
                await self.store.clear_login_failures(key)
            return Attempt(user)
        now = self.clock.now()
        shown = shown_name(self.directory, name)
        for key, what in zip(keys, (f"user {shown}", f"address {address}")):
            count = await self.store.note_login_failure(key, now, self.backoff.forget_after)
            if count == self.backoff.lockout_after:
                audit.warning("sign-in locked for %s after %d failed attempts; it unlocks in %.0f minutes",
                              what, count, self.backoff.lockout_seconds / 60)
        log.warning("failed sign-in of %s from %s", shown, address)
        return Attempt(None)
