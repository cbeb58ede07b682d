"""The instances sharing one store, as one cluster: each beats into the store's registry
(who is up, which config it runs), and a reload asked of any one of them reaches all:
the request is announced through the store, every instance sees it within a poll
(POLL_SECONDS), builds and checks the config files, swaps them in or refuses keeping
the config it has, and writes its answer back; the instance that was asked waits
(bounded) for the answers of every live instance and reports who took it, who refused
with what problems, and who did not answer in time.

A poll that finds several requests reloads once and answers them all: a reload reads
the files as they are now, whichever request asked for it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from .clock import Clock
from .errors import StoreError
from .store.protocols.instances import Instance, InstanceStore, ReloadOutcome, ReloadRequest

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how often an instance beats and looks for reload requests
LIVE_SECONDS = 10.0  # an instance not seen for this long is taken for dead
WAIT_SECONDS = 10.0  # how long a reload waits for the answers by default
MAX_WAIT_SECONDS = 60.0
# Top-level files of the config directory that are not the catalog's.
_NOT_CONFIG = frozenset({"users.yaml"})
_CONFIG_FOLDERS = ("playbooks", "templates", "contacts", "drills")


def config_fingerprint(config_dir: Path) -> str:
    """A short hash of the config files (the catalog's folders and the top-level YAML
    files but the users file): two instances with the same one run the same files."""
    digest = hashlib.sha256()
    files = [p for p in sorted(config_dir.glob("*.y*ml")) if p.name not in _NOT_CONFIG]
    for folder in _CONFIG_FOLDERS:
        if (config_dir / folder).is_dir():
            files += sorted(p for p in (config_dir / folder).rglob("*") if p.is_file())
    for path in files:
        try:
            content = path.read_bytes()
        except OSError:
            continue  # the catalog's load names an unreadable file
        digest.update(path.relative_to(config_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(content).digest())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Reloaded:
    """One instance's reload: the problems that refused it (none: it took), and the
    fingerprint of the files it read."""

    problems: list[str]
    fingerprint: str


@dataclass(frozen=True)
class ReloadReport:
    """What a cluster-wide reload came to."""

    request: ReloadRequest
    took: list[ReloadOutcome]
    refused: list[ReloadOutcome]
    silent: list[Instance]  # live when asked, and no answer within the wait

    @property
    def result(self) -> str:
        """"took" (every instance), "refused" (at least one), or "incomplete" (none
        refused, some did not answer in time)."""
        return "refused" if self.refused else "incomplete" if self.silent else "took"


@dataclass
class Cluster:
    """This instance's part in the cluster. `reload` builds, checks and (if clean) swaps
    the config in, and says how it went; `fingerprint` is the config's at start-up."""

    store: InstanceStore
    clock: Clock
    instance_id: str
    reload: Callable[[], Awaitable[Reloaded]]
    fingerprint: str
    poll_seconds: float = POLL_SECONDS
    live_seconds: float = LIVE_SECONDS
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    _cursor: int | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        self.started_at = self.clock.now()
        self.loaded_at = self.started_at

    async def run(self, stop: asyncio.Event) -> None:
        """Beat and answer reload requests every `poll_seconds` until `stop`; then leave
        the registry (a stopped instance is not waited for)."""
        while not stop.is_set():
            try:
                await self.step()
            except StoreError as exc:
                log.warning("cluster beat skipped: %s", exc)
            except Exception:  # a bug must not stop the beats (the others would wait on us)
                log.exception("cluster step failed")
            try:
                await asyncio.wait_for(stop.wait(), self.poll_seconds)
            except TimeoutError:
                pass
        try:
            await self.store.leave(self.instance_id)
        except Exception as exc:  # best effort (the store may be closed already): a silent instance ages out anyway
            log.warning("could not leave the instance registry: %s", exc)

    async def step(self) -> None:
        """One beat, then the reload requests not answered yet. The first step notes
        where the announcements stand before this instance is seen (the config was just
        loaded at start-up): a request announced once it is seen is answered."""
        if self._cursor is None:
            await self._start_cursor()
        async with self._lock:  # not between a reload and its beat: the registry never goes back to the old config
            await self.store.beat(self._beat())
        await self.catch_up()

    async def _start_cursor(self) -> None:
        async with self._lock:
            if self._cursor is None:
                self._cursor = await self.store.last_reload_seq()

    async def catch_up(self) -> None:
        """Answer the requests announced since the last look (one reload for them all)."""
        async with self._lock:
            if self._cursor is None:
                return
            pending = await self.store.reload_requests(self._cursor)
            if not pending:
                return
            log.info("reload asked through the store (%s)", ", ".join(f"{r.id} by {r.by}" for r in pending))
            done = await self.reload_here()
            await self.store.beat(self._beat())  # the registry shows the config in use as soon as the outcome does
            at = self.clock.now()
            for request in pending:
                await self.store.record_reload_outcome(ReloadOutcome(
                    request_id=request.id, instance=self.instance_id, took=not done.problems,
                    problems=done.problems, config=self.fingerprint, at=at))
            self._cursor = pending[-1].seq

    async def reload_here(self) -> Reloaded:
        """Reload this instance only (SIGHUP, or its part of a cluster reload). A reload
        that fails otherwise than on the files' problems is a refusal too, naming it."""
        try:
            done = await self.reload()
        except (OSError, ValueError) as exc:
            log.exception("reload failed")
            done = Reloaded([f"the reload failed: {exc}"], self.fingerprint)
        if not done.problems:
            self.fingerprint = done.fingerprint
            self.loaded_at = self.clock.now()
        return done

    async def reload_everywhere(self, by: str, wait: float = WAIT_SECONDS) -> ReloadReport:
        """Announce a reload, answer it here at once, and wait up to `wait` seconds for
        every instance live now (seen within `live_seconds`) to answer."""
        if self._cursor is None:
            await self._start_cursor()  # where announcements stand before ours
        now = self.clock.now()
        live = {i.id: i for i in await self.store.instances(now - timedelta(seconds=self.live_seconds))}
        live.setdefault(self.instance_id, self._beat())
        request = await self.store.announce_reload(f"reload-{secrets.token_hex(6)}", by, now)
        log.info("reload %s announced by %s to %d instance(s)", request.id, by, len(live))
        await self.catch_up()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            outcomes = await self.store.reload_outcomes(request.id)
            answered = {o.instance for o in outcomes}
            remaining = deadline - loop.time()
            if set(live) <= answered or remaining <= 0:
                break
            await asyncio.sleep(min(0.2, remaining))
        report = ReloadReport(request, [o for o in outcomes if o.took], [o for o in outcomes if not o.took],
                              [i for name, i in sorted(live.items()) if name not in answered])
        log.info("reload %s: %d took it, %d refused, %d did not answer", request.id, len(report.took),
                 len(report.refused), len(report.silent))
        return report

    def _beat(self) -> Instance:
        return Instance(id=self.instance_id, host=self.host, pid=self.pid, started_at=self.started_at,
                        seen_at=self.clock.now(), config=self.fingerprint, config_loaded_at=self.loaded_at)


CLUSTER = web.AppKey("cluster", Cluster)
