"""What the store keeps about the instances sharing it: a registry each live instance
beats into (who is up, which config it runs), and the cluster-wide reload requests with
each instance's answer to them (cluster.py carries them out)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import Field

from ...models import Record

# Reload requests (and their answers) kept; older ones are dropped when a new one comes.
RELOADS_KEPT = 100
# An instance not seen for this long is dropped from the registry at the next beat.
FORGET_SECONDS = 86400.0


class Instance(Record):
    """One running service, as it last said (its heartbeat)."""

    id: str  # the outbox worker id (`build_services`' worker): also in its claims and leases
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    config: str  # the fingerprint of the config files in use (cluster.config_fingerprint)
    config_loaded_at: datetime


class ReloadRequest(Record):
    """An announcement that every instance reload its config files."""

    id: str
    seq: int  # the store's order of announcements: 1, 2, ...
    by: str
    at: datetime


class ReloadOutcome(Record):
    """One instance's answer to a reload request."""

    request_id: str
    instance: str
    took: bool
    # Refused: each problem `path:line: message`; the config in use stays.
    problems: list[str] = Field(default_factory=list)
    config: str  # the fingerprint in use afterwards (the new one, or the old one kept)
    at: datetime


class InstanceStore(Protocol):
    """The instance registry and reload announcements. Every method raises StoreError
    when the backend cannot be reached (retryable); none raises anything else."""

    async def beat(self, instance: Instance) -> None:
        """Record (or refresh) `instance`, seen at `instance.seen_at`; instances not seen
        for FORGET_SECONDS before it are dropped."""

    async def leave(self, instance_id: str) -> None:
        """Take an instance out of the registry (it stops)."""

    async def instances(self, seen_since: datetime) -> list[Instance]:
        """The instances seen at or after `seen_since`, by id."""

    async def announce_reload(self, request_id: str, by: str, at: datetime) -> ReloadRequest:
        """Record a reload request; its `seq` is one past every earlier one's, so
        whoever reads `reload_requests(after)` sees the requests in this order and none
        can slip in behind one already read. Keeps the newest RELOADS_KEPT."""

    async def reload_requests(self, after_seq: int) -> list[ReloadRequest]:
        """The requests with `seq` > `after_seq`, oldest first."""

    async def last_reload_seq(self) -> int:
        """The newest request's `seq`, 0 when there was none."""

    async def record_reload_outcome(self, outcome: ReloadOutcome) -> None:
        """Record one instance's answer (a second answer of the same instance replaces it)."""

    async def reload_outcomes(self, request_id: str) -> list[ReloadOutcome]:
        """The answers to a request so far, by instance id."""
