"""The report a drill run ends in: the incident's own report (report.py), timed from
the moment the drill started (the synthetic trouble began then), the drill's success
criterion (who acknowledged within `success.ack_within` of the wording's first message,
against `min_ack_rate`), and the trend over the drill's previous runs: is the team
getting faster?

`build_drill_report` is pure; `load_drill_reports` reads the store (the edge)."""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Sequence

from ..clock import Clock
from ..config.catalog import Catalog
from ..config.schemas import Drill
from ..models import Ack, DrillRun, DrillRunStatus
from ..store import Store
from .incident import incident_report
from .parts import IncidentReport, Part

TREND_RUNS = 10


class Success(Part):
    ack_within_seconds: float
    min_ack_rate: float
    in_scope: int
    acked_in_time: int  # acknowledged within ack_within of the wording's first message
    rate_in_time: float | None
    passed: bool


class TrendPoint(Part):
    """One run, as the trend table shows it (durations from the drill's start)."""

    run_id: str
    started_at: datetime
    status: str
    detected: bool | None
    to_detect_seconds: float | None
    to_open_seconds: float | None
    to_first_script_seconds: float | None
    ack_rate: float | None
    median_ack_seconds: float | None
    passed: bool | None


class Trend(Part):
    points: list[TrendPoint]  # oldest first, this run last
    # This run against the mean of the earlier ones: negative is faster. None when
    # there is nothing to compare.
    first_script_change_seconds: float | None
    median_ack_change_seconds: float | None
    ack_rate_change: float | None


class DrillReport(Part):
    run: DrillRun
    drill_id: str
    title: str
    scenario: str  # "surge" | "trigger"
    channels: str
    # From the drill's start: the moment the synthetic surge began or the trigger fired.
    to_detect_seconds: float | None
    to_open_seconds: float | None
    to_first_script_seconds: float | None
    incident: IncidentReport | None
    success: Success | None
    trend: Trend


def _since(start: datetime, at: datetime | None) -> float | None:
    return (at - start).total_seconds() if at is not None else None


def success(drill: Drill, report: IncidentReport, acks: Sequence[Ack]) -> Success:
    """Acknowledged within `ack_within` of the first message of the wording in force,
    among the people it was sent to (the report's audience for that version)."""
    version = report.acks.version
    in_scope = report.acks.overall.in_scope
    first = report.timeliness.first_script_at
    limit = drill.success.ack_within.total_seconds()
    acked: set[str] = set()
    if first is not None and version is not None:
        acked = {a.person_id for a in acks
                 if a.version == version and (a.at - first).total_seconds() <= limit}
    acked_in_time = len(acked)
    rate = acked_in_time / in_scope if in_scope else None
    return Success(ack_within_seconds=limit, min_ack_rate=drill.success.min_ack_rate, in_scope=in_scope,
                   acked_in_time=acked_in_time, rate_in_time=rate,
                   passed=rate is not None and rate >= drill.success.min_ack_rate)


def point(run: DrillRun, report: IncidentReport | None, passed: bool | None) -> TrendPoint:
    t = report.timeliness if report else None
    return TrendPoint(
        run_id=run.id, started_at=run.started_at, status=run.status.value, detected=run.detected,
        to_detect_seconds=_since(run.started_at, t.detected_at) if t else None,
        to_open_seconds=_since(run.started_at, t.opened_at) if t else None,
        to_first_script_seconds=_since(run.started_at, t.first_script_at) if t else None,
        ack_rate=report.acks.overall.ack_rate if report else None,
        median_ack_seconds=report.acks.overall.median_seconds if report else None,
        passed=passed,
    )


def _change(now: float | None, before: list[float | None]) -> float | None:
    earlier = [b for b in before if b is not None]
    if now is None or not earlier:
        return None
    return now - statistics.fmean(earlier)


def build_drill_report(
    run: DrillRun, drill: Drill, incident: IncidentReport | None, acks: Sequence[Ack], earlier: Sequence[TrendPoint]
) -> DrillReport:
    """`earlier`: the trend points of the drill's previous runs, oldest first."""
    ok = success(drill, incident, acks) if incident is not None else None
    this = point(run, incident, ok.passed if ok else None)
    before = list(earlier)
    return DrillReport(
        run=run, drill_id=drill.id, title=drill.title, scenario=drill.scenario.kind, channels=drill.channels,
        to_detect_seconds=this.to_detect_seconds, to_open_seconds=this.to_open_seconds,
        to_first_script_seconds=this.to_first_script_seconds,
        incident=incident, success=ok,
        trend=Trend(
            points=[*before, this],
            first_script_change_seconds=_change(this.to_first_script_seconds, [p.to_first_script_seconds for p in before]),
            median_ack_change_seconds=_change(this.median_ack_seconds, [p.median_ack_seconds for p in before]),
            ack_rate_change=_change(this.ack_rate, [p.ack_rate for p in before]),
        ),
    )


async def _incident_report(store: Store, catalog: Catalog, run: DrillRun, clock: Clock) -> tuple[IncidentReport | None, list[Ack]]:
    if run.incident_id is None:
        return None, []
    report = await incident_report(store, catalog.contacts, run.incident_id, clock)
    return report, await store.acks(run.incident_id)


async def load_drill_reports(store: Store, catalog: Catalog, drill: Drill, clock: Clock,
                             limit: int = TREND_RUNS) -> list[DrillReport]:
    """The reports of the drill's last `limit` runs that started (missed and refused
    firings have none), newest first, each with the trend up to it."""
    runs = [r for r in await store.drill_runs(drill.id)
            if r.status in (DrillRunStatus.running, DrillRunStatus.finished)][:limit]
    reports: list[DrillReport] = []
    earlier: list[TrendPoint] = []
    for run in reversed(runs):  # oldest first, so each sees the ones before it
        incident, acks = await _incident_report(store, catalog, run, clock)
        report = build_drill_report(run, drill, incident, acks, earlier)
        reports.append(report)
        earlier.append(report.trend.points[-1])
    return list(reversed(reports))
