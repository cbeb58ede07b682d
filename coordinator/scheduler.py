"""Time-driven work, in one place: APScheduler runs the tick (due escalations, reminders
and follow-ups; drills moved on; delivery statuses looked up) every few seconds, and
fires each drill on its cron schedule. What is due comes from the store, not from here,
so a missed or doubled call changes nothing."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Callable

from apscheduler.job import Job  # type: ignore[import-untyped]
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .config.catalog import Catalog
from .clock import Clock
from .drills import Drills, cron
from .errors import StoreError
from .pipeline import Pipeline
from .reconcile import StatusReconciler
from .store import DrillStore

log = logging.getLogger(__name__)

DRILL_JOB = "drill:"  # id prefix of the drills' cron jobs
RECONCILE_LEASE = "reconcile"  # one instance looks delivery statuses up at a time


class Ticks:
    def __init__(self, *, store: DrillStore, clock: Clock, catalog: Callable[[], Catalog], pipeline: Pipeline,
                 drills: Drills, reconciler: StatusReconciler, every_seconds: float, reconcile_after: timedelta) -> None:
        """`every_seconds` 0: nothing runs by itself (tests tick by hand)."""
        self.store = store
        self.clock = clock
        self.catalog = catalog
        self.pipeline = pipeline
        self.drills = drills
        self.reconciler = reconciler
        self.every_seconds = every_seconds
        self.reconcile_after = reconcile_after
        self._scheduler = AsyncIOScheduler()

    @property
    def on(self) -> bool:
        return self.every_seconds > 0

    async def tick(self) -> None:
        try:
            await self.pipeline.tick()
            await self.drills.tick()
            if self.reconcile_after and await self.store.acquire_lease(
                    RECONCILE_LEASE, self.pipeline.worker, self.clock.now(), self.every_seconds * 3):
                await self.reconciler.run(after=self.reconcile_after)
        except StoreError as exc:
            log.warning("tick skipped: %s", exc)

    def start(self) -> None:
        """In the running event loop."""
        if not self.on:
            return
        self._scheduler.add_job(self.tick, "interval", seconds=self.every_seconds, id="tick", max_instances=1,
                                coalesce=True)
        self.schedule_drills()
        self._scheduler.start()

    def schedule_drills(self) -> None:
        """One cron job per drill of the catalog in use, in place of those of the last one."""
        if not self.on:
            return
        for job in self._scheduler.get_jobs():
            if job.id.startswith(DRILL_JOB):
                job.remove()
        for drill in self.catalog().drills.values():
            self._scheduler.add_job(self._fire_drills, cron(drill), id=f"{DRILL_JOB}{drill.id}", max_instances=1,
                                    coalesce=True, misfire_grace_time=int(self.drills.misfire_grace.total_seconds()))

    async def _fire_drills(self) -> None:
        try:
            await self.drills.tick()
        except StoreError as exc:
            log.warning("drill firing skipped: %s", exc)

    def jobs(self) -> dict[str, Job]:
        """The scheduled jobs by id ("tick", "drill:<id>")."""
        return {job.id: job for job in self._scheduler.get_jobs()}

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
