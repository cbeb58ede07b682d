"""`coordinator drill run ID`: one drill, start to end, in this process, against the
sandbox (Twilio-compatible SMS API and SMTP inbox on loopback) on a throwaway store.

The service is wired as in production (create_app over real HTTP, the real twilio and
SMTP clients); what a drill needs from people is played: three days of ordinary
complaints teach the detector the stream's baseline, the frontline's phones answer "1"
after a while (most of them), and where the playbook wants the leader's approval, the
leader approves after a few minutes. Domain time runs on a clock moved in steps, from
the drill's next scheduled time (the time of day sets the stream's usual rate), so an
hour's drill takes seconds. Ends with the drill's report."""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from ..clock import ManualClock
from ..config.catalog import Catalog, load_catalog
from ..config.schemas import Drill, SurgeScenario
from ..drills import channels_are_sandbox, next_firings
from ..logs import log_ids
from ..models import DrillRunStatus
from ..reports.drill import DrillReport, load_drill_reports
from ..sampling import poisson
from ..sandbox import Delivery, TwilioSandbox
from ..sandbox.staff import SimulatedStaff
from ..web.state import Services
from .sandboxed import SENDER, sandboxed_service

STEP = timedelta(seconds=30)


@dataclass(frozen=True)
class Players:
    answer_share: float = 0.9  # of the frontline, those who answer at all
    answer_delay: tuple[float, float] = (30.0, 900.0)  # seconds after the message
    approve_after: timedelta = timedelta(minutes=3)  # the leader, where the playbook asks for approval
    seed: int = 2026


def _history(drill: Drill, end: datetime, rng: random.Random) -> list[tuple[int, dict[str, Any]]]:
    """Three days of the stream's ordinary complaints, with a daily rhythm."""
    scenario = drill.scenario
    assert isinstance(scenario, SurgeScenario)
    items: list[tuple[int, dict[str, Any]]] = []
    for b in range(3 * 288):
        at = end - timedelta(days=3) + timedelta(minutes=5 * b)
        hour = (at.hour + 8) % 24  # Shanghai
        for k in range(poisson(rng, 0.5 + 1.5 * (8 <= hour <= 22))):
            items.append((len(items) + 1, {
                "id": f"history-{b}-{k}", "received_at": (at + timedelta(seconds=rng.randrange(300))).isoformat(),
                "channel": "hotline", "category": scenario.category, "region": scenario.region}))
    return items


async def rehearse(config_dir: Path, drill_id: str, store_path: Path, *, players: Players = Players(),
                   say: Callable[[str], None] = print) -> DrillReport | None:
    catalog = load_catalog(config_dir)
    drill = catalog.drills.get(drill_id)
    if drill is None:
        raise KeyError(f"no drill '{drill_id}' in {config_dir / 'drills'} (known: {', '.join(sorted(catalog.drills))})")
    # As if at its next scheduled time: the time of day decides the stream's usual rate.
    clock = ManualClock(next_firings(drill, datetime.now(timezone.utc), 1)[0].astimezone(timezone.utc))
    delivery = Delivery(step_delay=0.01, receipt_delay=0.02)
    async with sandboxed_service(catalog, config_dir, store_path, clock, seed=players.seed, delivery=delivery) as up:
        assert channels_are_sandbox(up.settings)
        return await _run(up.services, catalog, drill, up.sandbox, clock, players, say)


async def _run(services: Services, catalog: Catalog, drill: Drill, sandbox: TwilioSandbox, clock: ManualClock,
               players: Players, say: Callable[[str], None]) -> DrillReport | None:
    store = services.store
    if isinstance(drill.scenario, SurgeScenario):
        items = _history(drill, clock.now(), random.Random(players.seed))
        for i in range(0, len(items), 2000):
            await services.intake.submit(items[i:i + 2000])
        await services.pipeline.catch_up()
        say(f"history: {len(items)} ordinary complaints over three days taught the detector "
            f"{drill.scenario.category}/{drill.scenario.region}")
    staff = SimulatedStaff(sandbox, clock, SENDER, answer_share=players.answer_share, delay=players.answer_delay,
                           seed=players.seed)
    run = await services.drills.start(drill.id, how="manual", by="cli")
    assert run is not None
    say(f"drill {drill.id} started as run {run.id} ({drill.scenario.kind} scenario, {drill.channels} channels)")
    end = run.started_at + drill.max_duration + timedelta(minutes=10)
    with log_ids(drill_run=run.id):  # every line of the run names it
        while clock.now() < end:
            clock.advance(STEP)
            await services.pipeline.tick()
            await services.drills.tick()
            await _settle(services, sandbox)
            await staff.step()
            run = await store.get_drill_run(run.id)  # type: ignore[assignment]
            assert run is not None
            if run.incident_id is not None:
                await _leader_approves(services, run.incident_id, clock, players)
            if run.status != DrillRunStatus.running:
                break
        await _settle(services, sandbox)
    say(f"run {run.id} {run.status.value}: {run.end_reason or ''}")
    reports = await load_drill_reports(store, catalog, drill, clock)
    return reports[0] if reports else None


async def _leader_approves(services: Services, incident_id: str, clock: ManualClock, players: Players) -> None:
    incident = await services.store.get_incident(incident_id)
    waiting = [v for v in incident.scripts if not v.approved and not v.missing]
    leader = incident.roles[0].holder if incident.roles else None
    for version in waiting:
        if leader is not None and clock.now() - version.created_at >= players.approve_after:
            await services.pipeline.approve(incident_id, version.version, leader)


async def _settle(services: Services, sandbox: TwilioSandbox) -> None:
    for _ in range(100):
        await services.outbox.drain()
        await sandbox.settled()
        if await services.store.outbox_size() == 0:
            return


def summary(report: DrillReport, catalog: Catalog) -> list[str]:
    """The report in a few lines for the terminal; the full one is JSON or a page."""
    def took(seconds: float | None) -> str:
        if seconds is None:
            return "—"
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"

    def pct(rate: float | None) -> str:
        return f"{rate * 100:.0f}%" if rate is not None else "—"

    run = report.run
    lines = [f"report of {run.id} — {report.title}"]
    detected = "not exercised" if run.detected is None else (took(report.to_detect_seconds) if run.detected
                                                             else "NOT detected (playbook triggered directly)")
    lines.append(f"  time to detect:        {detected}")
    lines.append(f"  time to open:          {took(report.to_open_seconds)}")
    lines.append(f"  time to first script:  {took(report.to_first_script_seconds)}")
    incident = report.incident
    if incident is None:
        lines.append("  no incident was opened")
        return lines
    lines.append(f"  incident {incident.incident_id} [{incident.severity}] {incident.status}")
    for channel in incident.delivery:
        lines.append(f"  {channel.channel:5} {channel.messages} messages to {channel.recipients} people, "
                     f"{channel.sent + channel.delivered} sent or delivered ({pct(channel.delivery_rate)}), "
                     f"{channel.failed} failed")
    overall = incident.acks.overall
    lines.append(f"  acknowledged: {overall.acked}/{overall.in_scope} ({pct(overall.ack_rate)}), "
                 f"median {took(overall.median_seconds)}, p90 {took(overall.p90_seconds)}")
    for group in incident.acks.by_team:
        lines.append(f"    team {group.name}: {group.stats.acked}/{group.stats.in_scope}, median {took(group.stats.median_seconds)}")
    if incident.acks.never_acked:
        names = ", ".join(p.name for p in incident.acks.never_acked)
        lines.append(f"  never acknowledged ({len(incident.acks.never_acked)}): {names}")
    lines.append(f"  escalations: {len(incident.escalations)}; reminders and supervisor notices: {len(incident.chases)}")
    if report.success is not None:
        s = report.success
        lines.append(f"  success: {s.acked_in_time}/{s.in_scope} acknowledged within {took(s.ack_within_seconds)} "
                     f"({pct(s.rate_in_time)}, needed {pct(s.min_ack_rate)}): {'PASSED' if s.passed else 'FAILED'}")
    return lines


def main(config_dir: Path, drill_id: str, players: Players = Players()) -> int:
    import asyncio

    with tempfile.TemporaryDirectory(prefix="coordinator-drill-") as tmp:
        try:
            report = asyncio.run(rehearse(config_dir, drill_id, Path(tmp) / "drill.db", players=players))
        except KeyError as exc:
            print(f"error: {exc.args[0]}")
            return 2
        if report is None:
            return 1
        for line in summary(report, load_catalog(config_dir)):
            print(line)
    return 0 if report.run.status == DrillRunStatus.finished else 1
