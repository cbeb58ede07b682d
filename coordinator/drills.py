"""Drills: mock incidents on a cron schedule, through the real path, clearly marked.

The schedule is data in the store: each drill has a cursor, its next firing not yet
handled. Whoever moves the cursor (compare-and-set) handles the firings it passes, and
a run's id is the drill and its firing time, so a firing runs once however many
instances see it due; only the instance holding the scheduler lease looks at all.
APScheduler's cron trigger computes the firings in the drill's time zone; its
AsyncIOScheduler calls `tick` (app.py), on a cron job per drill and on the service tick.

A run then moves on every tick: a surge scenario feeds synthetic complaints through
intake into the drill's own streams (judged against the real stream's baseline, or as a
new stream would be where it has learned nothing, so detection is exercised too; if nothing
is detected, the playbook is triggered directly); a trigger scenario opens it directly. The drill
incident takes the same path as a real one. The run ends when everyone in scope and
every role has acknowledged, or when its time is up: the incident is resolved (the
stand-down goes out, marked as a drill) and the report is computed from the store."""

from __future__ import annotations

import logging
import math
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable
from urllib.parse import urlparse

from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

from .config.catalog import Catalog
from .clock import Clock
from .errors import Conflict, DrillNotFound, DrillRefused
from .webhooks.events import LifecycleEvents
from .logs import log_ids
from .models import ALL_REGIONS, DRILL_PREFIX, DrillRun, DrillRunStatus, Incident, stream_key
from .pipeline import DrillSetup, InvalidAction, Pipeline
from .sampling import poisson
from .config.schemas import Drill, SurgeScenario
from .config.settings import Settings
from .store import Store
from .detection.streams import StreamMonitor

log = logging.getLogger(__name__)

SCHEDULER_LEASE = "drill-scheduler"
CHANNELS = ("hotline", "hotline", "hotline", "app", "shop")


def cron(drill: Drill) -> CronTrigger:
    return CronTrigger.from_crontab(drill.schedule, timezone=drill.timezone)


def next_firings(drill: Drill, after: datetime, count: int = 3) -> list[datetime]:
    """The drill's next `count` firings after `after`, in its own time zone."""
    trigger, at = cron(drill), after
    out: list[datetime] = []
    while len(out) < count:
        nxt = trigger.get_next_fire_time(at if out else None, at)
        if nxt is None:
            break
        out.append(nxt)
        at = nxt
    return out


def due_firings(trigger: CronTrigger, cursor: datetime, now: datetime, limit: int = 50) -> tuple[list[datetime], datetime]:
    """The firings from `cursor` up to `now` (at most `limit`, the latest kept), and the
    first firing after `now`: the cursor's next value."""
    fired: list[datetime] = []
    at: datetime | None = cursor
    while at is not None and at <= now:
        fired.append(at)
        at = trigger.get_next_fire_time(at, now + timedelta(days=3650))
    assert at is not None, "a cron trigger always fires again"
    return fired[-limit:], at


def channels_are_sandbox(settings: Settings) -> bool:
    """True when nothing this service sends can reach a real phone or mailbox: SMS goes
    to a Twilio API or an SMSC on loopback (the sandboxes) or nowhere, email to a loopback
    server or nowhere. A drill in `sandbox` channels runs only then."""
    sms_ok = (settings.twilio_account_sid is None or _loopback(settings.twilio_base_url)) and (
        settings.smpp_host is None or _loopback(f"smpp://{settings.smpp_host}"))
    email_ok = settings.smtp_host is None or _loopback(f"smtp://{settings.smtp_host}")
    return sms_ok and email_ok and all(_loopback(url) for url in settings.messenger_urls)  # DingTalk, WeCom


def _loopback(url: str | None) -> bool:
    host = urlparse(url).hostname if url else None
    return host in {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Arrival:
    at: datetime
    channel: str


def surge_plan(run: DrillRun, scenario: SurgeScenario, base_rate: float, bucket_seconds: int) -> list[Arrival]:
    """The synthetic complaints of a surge run, the same every time it is computed (the
    run id seeds it), so any instance can feed the next part and duplicates dedupe by id.
    `base_rate`: the stream's usual complaints per bucket; the surge is `multiplier`
    times that from the start (step) or growing to it over the duration (ramp)."""
    rng = random.Random(run.id)
    buckets = max(1, math.ceil(scenario.duration.total_seconds() / bucket_seconds))
    arrivals: list[Arrival] = []
    for i in range(buckets):
        grow = 1.0 if scenario.shape == "step" else (i + 1) / buckets
        rate = base_rate * (1.0 + (scenario.multiplier - 1.0) * grow)
        start = run.started_at + timedelta(seconds=i * bucket_seconds)
        offsets = sorted(rng.uniform(0, bucket_seconds) for _ in range(poisson(rng, rate)))
        arrivals += [Arrival(start + timedelta(seconds=o), rng.choice(CHANNELS)) for o in offsets]
    return arrivals


def ended(incident: Incident, acked: set[str], recipients: set[str]) -> bool:
    """Everyone is in: a script reached people, each of them and every role holder
    acknowledged the current version."""
    current = incident.current_script
    if current is None or not recipients:
        return False
    return recipients <= acked and all(r.acked_at is not None for r in incident.roles if not r.unfilled)


def drill_setup(run: DrillRun, drill: Drill) -> DrillSetup:
    """What the run adds to the incident it opens: its id, parameters and audience."""
    audience = drill.audience
    return DrillSetup(run_id=run.id, params=dict(drill.scenario.params),
                      teams=audience.teams if audience else None, regions=audience.regions if audience else None)


class RunningDrills:
    """Which running drill a drill surge belongs to. Built before the pipeline, which asks
    it when a drill stream surges; the drill runner itself is built after the pipeline."""

    def __init__(self, *, store: Store, catalog: Callable[[], Catalog]) -> None:
        self.store = store
        self.catalog = catalog

    async def setup_for(self, surge_key: str) -> DrillSetup | None:
        """The running surge drill whose streams `surge_key` is one of."""
        for run in await self.store.drill_runs():
            if run.status != DrillRunStatus.running:
                continue
            drill = self.catalog().drills.get(run.drill_id)
            if drill is None or not isinstance(drill.scenario, SurgeScenario):
                continue
            s = drill.scenario
            if surge_key in (DRILL_PREFIX + stream_key(s.category, s.region),
                             DRILL_PREFIX + stream_key(s.category, ALL_REGIONS)):
                return drill_setup(run, drill)
        return None


class Drills:
    def __init__(
        self,
        *,
        store: Store,
        catalog: Callable[[], Catalog],
        clock: Clock,
        pipeline: Pipeline,
        monitor: StreamMonitor, lifecycle: LifecycleEvents,
        sandbox_channels: bool,
        owner: str | None = None,
        misfire_grace: timedelta = timedelta(minutes=10),
        lease_seconds: float = 60.0,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.pipeline = pipeline
        self.monitor = monitor
        self.lifecycle = lifecycle  # a finished run is told to webhook subscribers
        self.sandbox_channels = sandbox_channels
        self.owner = owner or f"drills-{secrets.token_hex(4)}"
        # A firing missed while no instance was up runs at start-up if it is at most this
        # late; older ones are recorded as missed.
        self.misfire_grace = misfire_grace
        self.lease_seconds = lease_seconds

    def drill(self, drill_id: str) -> Drill:
        drill = self.catalog().drills.get(drill_id)
        if drill is None:
            raise DrillNotFound(drill_id)
        return drill

    # --- schedule ------------------------------------------------------------------

    async def tick(self) -> list[DrillRun]:
        """Fire what is due (the scheduler lease's holder only), then move every running
        run on. Returns the runs started now."""
        started: list[DrillRun] = []
        if await self.store.acquire_lease(SCHEDULER_LEASE, self.owner, self.clock.now(), self.lease_seconds):
            started = await self.fire_due()
        for run in [r for r in await self.store.drill_runs() if r.status == DrillRunStatus.running]:
            with log_ids(drill_run=run.id):
                await self.progress(run.id)
        return started

    async def fire_due(self) -> list[DrillRun]:
        now = self.clock.now()
        started: list[DrillRun] = []
        for drill in self.catalog().drills.values():
            trigger = cron(drill)
            cursor = await self.store.drill_cursor(drill.id)
            if cursor is None:  # first sight of this drill: from now on
                first = trigger.get_next_fire_time(None, now)
                if first is not None:
                    await self.store.move_drill_cursor(drill.id, None, first)
                continue
            if cursor > now:
                continue
            fired, following = due_firings(trigger, cursor, now)
            if not await self.store.move_drill_cursor(drill.id, cursor, following):
                continue  # another instance handled these firings
            for at in fired[:-1]:
                await self._missed(drill, at, now)
            last = fired[-1]
            if now - last <= self.misfire_grace:
                how = "schedule" if now - last <= timedelta(minutes=1) else "catch-up"
                run = await self.start(drill.id, how=how, scheduled_for=last)
                if run is not None:
                    started.append(run)
            else:
                await self._missed(drill, last, now)
        return started

    async def _missed(self, drill: Drill, at: datetime, now: datetime) -> None:
        run = DrillRun(id=_run_id(drill, at), drill_id=drill.id, title=drill.title, how="schedule",
                       scheduled_for=at, started_at=at, status=DrillRunStatus.missed, channels=drill.channels,
                       ended_at=now, end_reason=f"no instance was running at {at.isoformat()}")
        if await self.store.create_drill_run(run):
            log.warning("drill %s: the firing at %s was missed", drill.id, at.isoformat())

    # --- a run ---------------------------------------------------------------------

    async def start(self, drill_id: str, *, how: str = "manual", scheduled_for: datetime | None = None,
                    by: str = "scheduler") -> DrillRun | None:
        """Start a run now. None when this firing already has its run (another instance).
        Raises DrillNotFound, or DrillRefused for sandbox channels on a real service (a
        scheduled one is recorded as failed instead)."""
        drill = self.drill(drill_id)
        now = self.clock.now()
        # A manual run's id: its minute and 48 random bits (16 bits collided when hundreds
        # were started in one minute, and the run was refused as "already started").
        run_id = _run_id(drill, scheduled_for) if scheduled_for else f"{_run_id(drill, now)}-{secrets.token_hex(6)}"
        run = DrillRun(id=run_id, drill_id=drill.id, title=drill.title, how=how, by=by, scheduled_for=scheduled_for,
                       started_at=now, channels=drill.channels)
        if drill.channels == "sandbox" and not self.sandbox_channels:
            reason = (f"drill {drill.id} asks for sandbox channels, but this service sends through real "
                      "providers; run it with `coordinator drill run` or point the service at the sandbox")
            if how == "manual":
                raise DrillRefused(reason)
            await self.store.create_drill_run(run.model_copy(update={
                "status": DrillRunStatus.failed, "ended_at": now, "end_reason": reason}))
            log.error(reason)
            return None
        scenario = drill.scenario
        if isinstance(scenario, SurgeScenario):
            run = run.model_copy(update={"base_rate": await self._base_rate(scenario)})
        if not await self.store.create_drill_run(run):
            return None
        log.info("drill %s: run %s started (%s)", drill.id, run.id, how)
        with log_ids(drill_run=run.id):  # every line the run logs names it
            if not isinstance(scenario, SurgeScenario):
                return await self._trigger(run, drill)
            if cold := [f"stream {real} has no learned baseline yet: judged as a new stream would be"
                        for real in await self._seed(scenario)]:
                run = await self._update(run.id, lambda r: r.model_copy(update={"notes": r.notes + cold}))
            return await self.progress(run.id) or run

    async def _seed(self, scenario: SurgeScenario) -> list[str]:
        """Seed the drill's streams; the real ones that have learned nothing yet."""
        reals = [stream_key(scenario.category, region) for region in (scenario.region, ALL_REGIONS)]
        return [real for real in reals if not await self.monitor.seed(DRILL_PREFIX + real, real)]

    async def _trigger(self, run: DrillRun, drill: Drill, note: str | None = None) -> DrillRun:
        scenario = drill.scenario
        region = scenario.region
        opened = await self.pipeline.trigger(scenario.playbook, region=region, params=dict(scenario.params),
                                             drill=True, actor=f"drill:{drill.id}", setup=drill_setup(run, drill))
        if not opened.created:
            note = (note + "; " if note else "") + f"a drill incident was already open on this key: {opened.incident.id}"

        def change(r: DrillRun) -> DrillRun:
            notes = r.notes + ([note] if note else [])
            return r.model_copy(update={"incident_id": r.incident_id or opened.incident.id, "notes": notes,
                                        "detected": False if isinstance(scenario, SurgeScenario) else None})

        return await self._update(run.id, change)

    async def progress(self, run_id: str) -> DrillRun | None:
        """Move a running run on: feed its complaints, find its incident, end it when
        everyone acknowledged or its time is up."""
        run = await self.store.get_drill_run(run_id)
        if run is None or run.status != DrillRunStatus.running:
            return run
        drill = self.catalog().drills.get(run.drill_id)
        now = self.clock.now()
        if drill is None:
            return await self._finish(run, now, "the drill was removed from drills/")
        scenario = drill.scenario
        if isinstance(scenario, SurgeScenario) and run.incident_id is None:
            run = await self._feed(run, scenario, now)
            run = await self._link(run)
            if run.incident_id is None and now >= run.started_at + scenario.duration:
                run = await self._trigger(run, drill, note="no surge was detected while the synthetic complaints "
                                                          "came in: the playbook was triggered directly")
        if run.incident_id is None:
            if now >= run.started_at + drill.max_duration:
                return await self._finish(run, now, "time is up")
            return run
        if isinstance(scenario, SurgeScenario):
            run = await self._feed(run, scenario, now)  # the outage goes on for its duration
        assert run.incident_id is not None
        incident = await self.store.get_incident(run.incident_id)
        if not incident.is_open:
            return await self._finish(run, now, "the incident was resolved by hand")
        if await self._all_acknowledged(incident):
            return await self._finish(run, now, "all acknowledged", incident)
        if now >= run.started_at + drill.max_duration:
            return await self._finish(run, now, "time is up", incident)
        return run

    async def _feed(self, run: DrillRun, scenario: SurgeScenario, now: datetime) -> DrillRun:
        assert run.base_rate is not None, "set when a surge run starts"
        plan = surge_plan(run, scenario, run.base_rate, self.store.bucket_seconds)
        due = sum(1 for a in plan if a.at <= now)
        if due <= run.fed:
            return run
        items = [(k + 1, {"id": f"{run.id}:{k}", "received_at": plan[k].at.isoformat(), "channel": plan[k].channel,
                          "category": scenario.category, "region": scenario.region, "text": "【演练】模拟投诉"})
                 for k in range(run.fed, due)]
        result = await self.pipeline.receive(items, drill=True)
        if result.rejected:
            log.warning("drill run %s: %d synthetic complaints refused: %s", run.id, len(result.rejected),
                        result.rejected[0].reason)
        updated = await self._update(run.id, lambda r: r.model_copy(update={"fed": max(r.fed, due)}))
        return await self._link(updated)

    async def _base_rate(self, scenario: SurgeScenario) -> float:
        """The real stream's usual complaints per bucket at the start (at least one in two buckets,
        so a quiet stream's drill still has complaints to detect)."""
        status = await self.monitor.status(stream_key(scenario.category, scenario.region))
        return max(status.expected, 0.5)

    async def _link(self, run: DrillRun) -> DrillRun:
        if run.incident_id is not None:
            return run
        mine = [i for i in await self.store.list_incidents(drill=True) if i.drill_run == run.id]
        if not mine:
            return run
        incident = min(mine, key=lambda i: i.opened_at)
        return await self._update(run.id, lambda r: r.model_copy(update={
            "incident_id": r.incident_id or incident.id, "detected": incident.surge is not None}))

    async def _all_acknowledged(self, incident: Incident) -> bool:
        current = incident.current_script
        if current is None:
            return False
        recipients = {d.key.person_id for d in await self.store.deliveries(incident.id)
                      if d.key.version == current.version and d.key.is_script}
        acked = {a.person_id for a in await self.store.acks(incident.id) if a.version == current.version}
        return ended(incident, acked, recipients)

    async def _finish(self, run: DrillRun, now: datetime, reason: str, incident: Incident | None = None) -> DrillRun:
        if incident is not None and incident.is_open:
            try:
                await self.pipeline.resolve(incident.id, actor=f"drill:{run.drill_id}", note=f"演练结束：{_zh(reason)}")
            except InvalidAction:
                pass  # resolved meanwhile
        finished = await self._update(run.id, lambda r: r.model_copy(update={
            "status": DrillRunStatus.finished, "ended_at": r.ended_at or now, "end_reason": r.end_reason or reason}))
        log.info("drill run %s finished: %s", run.id, reason)
        await self.lifecycle.drill_finished(finished)
        return finished

    async def _update(self, run_id: str, change: Callable[[DrillRun], DrillRun], attempts: int = 20) -> DrillRun:
        for _ in range(attempts):
            run = await self.store.get_drill_run(run_id)
            assert run is not None, run_id
            updated = change(run).model_copy(update={"revision": run.revision + 1})
            try:
                await self.store.save_drill_run(updated)
                return updated
            except Conflict:
                continue
        raise Conflict(f"drill run {run_id} kept changing")


def _run_id(drill: Drill, at: datetime) -> str:
    return f"{drill.id}-{at.astimezone(cron(drill).timezone):%Y%m%d-%H%M}"


def _zh(reason: str) -> str:
    return {"all acknowledged": "全员已确认", "time is up": "演练时间到"}.get(reason, reason)
