"""The report a drill run ends in: the incident's own report (report.py), timed from
the moment the drill started (the synthetic trouble began then), the drill's success
criterion (who acknowledged within `success.ack_within` of the wording's first message,
against `min_ack_rate`), and the trend over the drill's previous runs: is the team
getting faster?

`build_drill_report` is pure; `load_drill_reports` reads the store (the edge)."""

from __future__ import annotations

import re
import statistics
from datetime import datetime
from typing import Callable, Sequence

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
    # The run's notes and end, as the (Chinese) report reads them: run_text.
    notes_text: list[str] = []
    end_text: str | None = None
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


# What drills.py writes on a run (its notes and end reason, in English, for the log and
# the API), as the report reads it, in Chinese and in English with names for ids.
# Patterns, so that runs already stored read too; a text no pattern knows is shown as it is.
RUN_TEXTS: list[tuple[re.Pattern[str], str, str]] = [(re.compile(p), zh, en) for p, zh, en in (
    (r"^stream (?P<stream>\S+) has no learned baseline yet: the playbook was triggered directly, "
     r"detection not exercised$", "投诉流 {stream} 尚无已学习的基线：直接启动了预案，未检验检测环节",
     "stream {stream} has no learned baseline yet: the playbook was triggered directly, detection not exercised"),
    (r"^stream (?P<stream>\S+) has no learned baseline yet: judged as a new stream would be$",
     "投诉流 {stream} 尚无已学习的基线：按新投诉流的起始基线检测（仅识别明显突增）",
     "stream {stream} has no learned baseline yet: judged as a new stream would be (unmistakable surges only)"),
    (r"^no surge was detected while the synthetic complaints came in: the playbook was triggered directly$",
     "模拟投诉期间未检测到突增：直接启动了预案",
     "no surge was detected while the synthetic complaints came in: the playbook was triggered directly"),
    (r"^a drill incident was already open on this key: (?P<incident>\S+)$", "该投诉流上已有演练事件在处置中：{incident}",
     "a drill incident was already open on this stream: {incident}"),
    (r"^all acknowledged$", "全员已确认", "everyone acknowledged"),
    (r"^time is up$", "演练时间到", "time was up"),
    (r"^the incident was resolved by hand$", "事件被手动解除", "the incident was resolved by hand"),
    (r"^the drill was removed from drills/$", "演练已从配置中删除", "the drill was removed from the config"),
    (r"^no instance was running at (?P<at>\S+)$", "计划时间没有运行中的服务实例",
     "no instance of the service was running at the planned time"),
    (r"^drill \S+ asks for sandbox channels, but this service sends through real providers",
     "本演练要求沙箱渠道，但此服务经真实渠道发送，未启动",
     "the drill asks for sandbox channels, but this service sends through real providers: not started"),
)]


def run_text(text: str, stream: Callable[[str], str] = lambda key: key, lang: str = "zh") -> str:
    """A run's note or end reason in Chinese, or in English with `lang="en"` (notes
    joined with "; " each read alone); `stream` names a stream key (宽带故障 · 宁波 for
    broadband/ningbo)."""
    def one(part: str) -> str:
        for pattern, zh, en in RUN_TEXTS:
            found = pattern.search(part)
            if found:
                values = found.groupdict()
                if "stream" in values:
                    values["stream"] = stream(values["stream"])
                return (zh if lang == "zh" else en).format(**values)
        return part
    return ("；" if lang == "zh" else "; ").join(one(part) for part in text.split("; "))


def build_drill_report(
    run: DrillRun, drill: Drill, incident: IncidentReport | None, acks: Sequence[Ack], earlier: Sequence[TrendPoint],
    stream: Callable[[str], str] = lambda key: key,
) -> DrillReport:
    """`earlier`: the trend points of the drill's previous runs, oldest first; `stream`
    names a stream key in the notes."""
    ok = success(drill, incident, acks) if incident is not None else None
    this = point(run, incident, ok.passed if ok else None)
    before = list(earlier)
    return DrillReport(
        run=run, notes_text=[run_text(n, stream) for n in run.notes],
        end_text=run_text(run.end_reason, stream) if run.end_reason else None,
        drill_id=drill.id, title=drill.title, scenario=drill.scenario.kind, channels=drill.channels,
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


def stream_name(catalog: Catalog, key: str, everywhere: str = "全部地区") -> str:
    """宽带故障 · 宁波 for broadband/ningbo (`everywhere` for *)."""
    category, _, region = key.partition("/")
    found = catalog.contacts.regions.get(region)
    where = everywhere if region == "*" else found.name if found is not None else region
    return f"{catalog.categories.get(category, category)} · {where}"


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
        report = build_drill_report(run, drill, incident, acks, earlier, stream=lambda key: stream_name(catalog, key))
        reports.append(report)
        earlier.append(report.trend.points[-1])
    return list(reversed(reports))
