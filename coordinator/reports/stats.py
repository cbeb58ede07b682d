"""The monthly analysis a complaint department reports upward: complaints per day or
month by category, region and channel with the share of repeat complainants, and
incidents per period with their median time figures. Drills never count in the real
figures; their incidents are rolled up on their own.

Pure: it takes the store's hourly counts (ComplaintStore.complaint_stats) and each incident's times
(from its report, coordinator/reports/incident.py) and returns values. Periods are local days
("2026-11-24") or months ("2026-11") in the operator's time zone; an hour belongs to the
local day its start falls in.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Iterable, Literal, Sequence

from ..store.records import StatRow
from .parts import Part, median

By = Literal["day", "month"]
DimensionName = Literal["category", "region", "channel"]
DIMENSIONS: tuple[DimensionName, ...] = ("category", "region", "channel")


class ComplaintCount(Part):
    key: str  # a period, or a category / region / channel id
    count: int
    repeat: int
    repeat_share: float | None  # repeat / count; None without complaints


class ComplaintCell(Part):
    """Complaints of one key of a dimension in one period (only non-zero cells)."""

    period: str
    key: str
    count: int
    repeat: int


class ComplaintDimension(Part):
    name: DimensionName
    totals: list[ComplaintCount]  # over the whole range, most complaints first
    cells: list[ComplaintCell]  # by period, then key


class ComplaintRow(Part):
    """One line of the full table (the CSV): a period, category, region and channel."""

    period: str
    category: str
    region: str
    channel: str
    count: int
    repeat: int


class IncidentTimes(Part):
    """One incident's figures, as its report gives them (report.Timeliness)."""

    id: str
    opened_at: datetime
    drill: bool
    to_detect_seconds: float | None
    to_open_seconds: float | None
    to_first_script_seconds: float | None
    to_resolve_seconds: float | None


class IncidentPeriod(Part):
    """Incidents opened in one period. A median is over the incidents that have the
    figure (to_detect: those opened by a surge; to_resolve: those resolved); None when
    none has it."""

    period: str
    count: int
    resolved: int
    median_to_detect_seconds: float | None
    median_to_open_seconds: float | None
    median_to_first_script_seconds: float | None
    median_to_resolve_seconds: float | None


class Statistics(Part):
    start: date  # first local day
    end: date  # last local day, included
    by: By
    timezone: str
    total: ComplaintCount  # key "total"
    periods: list[ComplaintCount]  # every period of the range, empty ones included
    dimensions: list[ComplaintDimension]  # category, region, channel
    rows: list[ComplaintRow]
    incidents: list[IncidentPeriod]  # real incidents, periods that have any
    incidents_total: IncidentPeriod  # every real incident of the range, period "total"
    drill_incidents: list[IncidentPeriod]  # drills, apart: never in the figures above


def count(key: str, n: int, repeat: int) -> ComplaintCount:
    return ComplaintCount(key=key, count=n, repeat=repeat, repeat_share=round(repeat / n, 4) if n else None)


def period_of(day: date, by: By) -> str:
    return day.isoformat() if by == "day" else day.strftime("%Y-%m")


def periods(start: date, end: date, by: By) -> list[str]:
    """Every period from `start` to `end` (both included), in order."""
    out: list[str] = []
    day = start
    while day <= end:
        p = period_of(day, by)
        if not out or out[-1] != p:
            out.append(p)
        day += timedelta(days=1)
    return out


def utc_span(start: date, end: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """From local midnight starting `start` to local midnight after `end`."""
    return (datetime.combine(start, time(), tz), datetime.combine(end + timedelta(days=1), time(), tz))


def local_day(hour: int, tz: tzinfo) -> date:
    return datetime.fromtimestamp(hour, tz).date()


def complaint_rows(rows: Iterable[StatRow], tz: tzinfo, by: By) -> list[ComplaintRow]:
    """Hourly counts summed per period, category, region and channel, sorted."""
    sums: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    day_of: dict[int, str] = {}  # many rows share an hour
    for r in rows:
        period = day_of.get(r.hour)
        if period is None:
            period = day_of[r.hour] = period_of(local_day(r.hour, tz), by)
        entry = sums[(period, r.category, r.region, r.channel)]
        entry[0] += r.count
        entry[1] += r.repeat
    return [ComplaintRow(period=p, category=c, region=g, channel=ch, count=n, repeat=rp)
            for (p, c, g, ch), (n, rp) in sorted(sums.items())]


def dimension(name: DimensionName, rows: Sequence[ComplaintRow]) -> ComplaintDimension:
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        key = getattr(r, name)
        for entry in (cells[(r.period, key)], totals[key]):
            entry[0] += r.count
            entry[1] += r.repeat
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return ComplaintDimension(
        name=name,
        totals=[count(k, n, rp) for k, (n, rp) in ranked],
        cells=[ComplaintCell(period=p, key=k, count=n, repeat=rp) for (p, k), (n, rp) in sorted(cells.items())],
    )


def incident_periods(times: Iterable[IncidentTimes], tz: tzinfo, by: By) -> list[IncidentPeriod]:
    """Incidents grouped by the local period they were opened in; periods without any
    are left out."""
    grouped: dict[str, list[IncidentTimes]] = defaultdict(list)
    for t in times:
        grouped[period_of(t.opened_at.astimezone(tz).date(), by)].append(t)
    return [incident_summary(p, group) for p, group in sorted(grouped.items())]


def incident_summary(period: str, group: Sequence[IncidentTimes]) -> IncidentPeriod:
    return IncidentPeriod(
        period=period, count=len(group), resolved=sum(1 for t in group if t.to_resolve_seconds is not None),
        median_to_detect_seconds=median(t.to_detect_seconds for t in group),
        median_to_open_seconds=median(t.to_open_seconds for t in group),
        median_to_first_script_seconds=median(t.to_first_script_seconds for t in group),
        median_to_resolve_seconds=median(t.to_resolve_seconds for t in group),
    )


def build_statistics(
    hourly: Iterable[StatRow], incidents: Iterable[IncidentTimes], *, start: date, end: date, by: By,
    tz: tzinfo, tz_name: str,
) -> Statistics:
    """The statistics of local days `start`..`end`. `hourly` and `incidents` may hold
    more than the range (what is outside is left out); drill complaints are never in
    `hourly` (the store does not count them), drill incidents go to `drill_incidents`."""
    first, after = utc_span(start, end, tz)
    inside = [r for r in hourly if first.timestamp() <= r.hour < after.timestamp()]
    per_period: dict[str, list[int]] = {p: [0, 0] for p in periods(start, end, by)}
    # (an hour that starts inside but whose local day is past the end: a zone offset of
    # a half hour; it is left out rather than shown as a period nobody asked for)
    rows = [r for r in complaint_rows(inside, tz, by) if r.period in per_period]
    for r in rows:
        per_period[r.period][0] += r.count
        per_period[r.period][1] += r.repeat
    opened = [t for t in incidents if first <= t.opened_at < after]
    real = [t for t in opened if not t.drill]
    return Statistics(
        start=start, end=end, by=by, timezone=tz_name,
        total=count("total", sum(r.count for r in rows), sum(r.repeat for r in rows)),
        periods=[count(p, n, rp) for p, (n, rp) in per_period.items()],
        dimensions=[dimension(name, rows) for name in DIMENSIONS],
        rows=rows,
        incidents=incident_periods(real, tz, by),
        incidents_total=incident_summary("total", real),
        drill_incidents=incident_periods((t for t in opened if t.drill), tz, by),
    )
