"""Statistics over HTTP: the page `/stats`, its CSV export `/stats.csv` and the JSON
`GET /api/stats`, all for a viewer. The period is `?from=YYYY-MM-DD&to=YYYY-MM-DD`
(local days, both included; default this month so far) and `by=day|month`. The figures
come from coordinator/reports/stats.py; this module reads the store and renders."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

from ..models import Channel
from ..reports.incident import incident_report
from ..reports.stats import By, IncidentPeriod, IncidentTimes, Statistics, build_statistics, utc_span
from ..config.users import Role
from .api import bad_request
from .charts import PHONE_FONT, PHONE_WIDTH, PeriodBar, for_screens, period_chart
from .auth import requires
from .i18n import DEFAULT_LANG, translator
from .page import console_page, page_lang, tr
from .reports import duration, percent
from .state import SERVICES, Services

routes = web.RouteTableDef()

# A year and a day: a leap year's statistics by month, and no more in one request.
MAX_DAYS = 366
# The days a period may name. The store counts complaints per hour since the Unix epoch,
# so nothing is older than its start; the end leaves room for the day after `to` and a
# time zone's offset, which past 9999-12-31 overflow (OverflowError, once a 500).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)


@dataclass(frozen=True)
class Period:
    start: date
    end: date
    by: By


def parse_period(query: Mapping[str, str], today: date) -> Period:
    """The period asked for; 400 `invalid_period` naming the parameter when it is not one."""
    def refuse(name: str, problem: str, message: str) -> web.HTTPBadRequest:
        # `problem` names the failure for the browser's page (browser.explain), in its language
        return bad_request("invalid_period", message, [{"parameter": name, "value": query.get(name),
                                                        "problem": problem}])

    def day(name: str, default: date) -> date:
        value = query.get(name)
        if not value:
            return default
        try:
            asked = date.fromisoformat(value)
        except ValueError:
            raise refuse(name, "not_a_date", f"'{name}' must be a date YYYY-MM-DD, got {value[:40]!r}") from None
        if not FIRST_DAY <= asked <= LAST_DAY:
            raise refuse(name, "out_of_range", f"'{name}' is out of the supported range: {value!r} is not between "
                               f"{FIRST_DAY} and {LAST_DAY}")
        return asked

    start = day("from", today.replace(day=1))
    end = day("to", today)
    by = query.get("by", "day")
    if by not in ("day", "month"):
        raise refuse("by", "day_or_month", f"'by' must be day or month, got {by[:40]!r}")
    if end < start:
        raise refuse("to", "before_from", "'to' is before 'from'")
    if (end - start).days + 1 > MAX_DAYS:
        raise refuse("to", "too_long", f"at most {MAX_DAYS} days at once")
    return Period(start, end, "day" if by == "day" else "month")


async def statistics(services: Services, period: Period) -> Statistics:
    tz = ZoneInfo(services.settings.timezone)
    first, after = utc_span(period.start, period.end, tz)
    hourly = await services.store.complaint_stats(first, after)
    return build_statistics(hourly, await incident_times(services, first, after), start=period.start,
                            end=period.end, by=period.by, tz=tz, tz_name=services.settings.timezone)


async def incident_times(services: Services, first: datetime, after: datetime) -> list[IncidentTimes]:
    """The times of the incidents opened in [first, after), from their reports, so that
    the statistics say what each report says."""
    out = []
    for incident in await services.store.list_incidents():
        if not first <= incident.opened_at < after:
            continue
        t = (await incident_report(services.store, services.catalog.contacts, incident.id, services.clock)).timeliness
        out.append(IncidentTimes(
            id=incident.id, opened_at=incident.opened_at, drill=incident.drill,
            to_detect_seconds=t.to_detect_seconds, to_open_seconds=t.to_open_seconds,
            to_first_script_seconds=t.to_first_script_seconds, to_resolve_seconds=t.to_resolve_seconds,
        ))
    return out


async def _asked(request: web.Request) -> tuple[Services, Period, Statistics]:
    services = request.app[SERVICES]
    today = services.clock.now().astimezone(ZoneInfo(services.settings.timezone)).date()
    period = parse_period(request.query, today)
    return services, period, await statistics(services, period)


@routes.get("/api/stats")
@requires(Role.viewer)
async def get_stats(request: web.Request) -> web.Response:
    _, _, stats = await _asked(request)
    return web.json_response(stats.model_dump(mode="json"))


# --- CSV ---------------------------------------------------------------------------


class Names:
    """The names behind the ids: categories and regions as the catalog and contacts give
    them (Chinese), channels in `t`'s language (the CSV's are Chinese)."""

    def __init__(self, services: Services, t: Callable[[str], str] = translator(DEFAULT_LANG)) -> None:
        self.categories = services.catalog.categories
        self.regions = {r.id: r.name for r in services.catalog.contacts.regions.values()}
        self.t = t

    def of(self, dimension: str, key: str) -> str:
        if dimension == "category":
            return self.categories.get(key, key)
        if dimension == "region":
            return self.regions.get(key, key)
        return self.t(f"stats.channel.{key}") if key in Channel.__members__ else key


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def complaints_csv(stats: Statistics, names: Names) -> list[list[str]]:
    head = ["期间", "类别代码", "类别", "地区代码", "地区", "渠道代码", "渠道", "投诉量", "重复投诉量", "重复投诉占比"]
    return [head] + [
        [r.period, r.category, names.of("category", r.category), r.region, names.of("region", r.region),
         r.channel, names.of("channel", r.channel), str(r.count), str(r.repeat),
         f"{r.repeat / r.count:.4f}" if r.count else ""]
        for r in stats.rows
    ]


def incidents_csv(stats: Statistics, with_drills: bool) -> list[list[str]]:
    head = ["期间", "类型", "事件数", "已解决", "检测用时中位数(秒)", "立案用时中位数(秒)", "首发口径用时中位数(秒)",
            "解决用时中位数(秒)"]

    def line(p: IncidentPeriod, kind: str) -> list[str]:
        return [p.period, kind, str(p.count), str(p.resolved), seconds(p.median_to_detect_seconds),
                seconds(p.median_to_open_seconds), seconds(p.median_to_first_script_seconds),
                seconds(p.median_to_resolve_seconds)]

    rows = [line(p, "真实") for p in stats.incidents]
    if with_drills:
        rows += [line(p, "演练") for p in stats.drill_incidents]
    return [head] + rows


def csv_response(rows: list[list[str]], filename: str, title: str) -> web.Response:
    """UTF-8 with a byte order mark: Excel then reads the Chinese right."""
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    body = ("\ufeff" + out.getvalue()).encode("utf-8")
    disposition = f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(title + '_' + filename)}"
    return web.Response(body=body, headers={"Content-Type": "text/csv; charset=utf-8",
                                            "Content-Disposition": disposition})


def flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true", "yes")


@routes.get("/stats.csv")
@requires(Role.viewer)
async def stats_csv(request: web.Request) -> web.Response:
    table = request.query.get("table", "complaints")
    if table not in ("complaints", "incidents"):
        raise bad_request("bad_request", f"'table' must be complaints or incidents, got {table[:40]!r}",
                          [{"parameter": "table", "value": table[:40], "problem": "unknown_table"}])
    services, period, stats = await _asked(request)
    filename = f"{table}_{period.start}_{period.end}_{period.by}.csv"
    if table == "complaints":
        return csv_response(complaints_csv(stats, Names(services)), filename, "投诉统计")
    return csv_response(incidents_csv(stats, flag(request.query, "drills")), filename, "事件统计")


# --- the page ----------------------------------------------------------------------


def chart(stats: Statistics, t: Callable[[str], str]) -> Markup:
    """The complaints of each period, repeats drawn over them, with a y axis of values.
    Days read 11-05 when the whole period is in one year, months 2026-11."""
    one_year = stats.by == "day" and len({p.key[:4] for p in stats.periods}) <= 1
    def hover(p: Any) -> str:
        return t("stats.bar_one" if p.count == 1 else "stats.bar") % (p.key, p.count, p.repeat)

    bars = [PeriodBar(label=p.key[5:] if one_year else p.key, count=p.count, repeat=p.repeat, hover=hover(p))
            for p in stats.periods]
    return for_screens(period_chart(bars, title=t("stats.chart")),
                       period_chart(bars, title=t("stats.chart"), width=PHONE_WIDTH, height=180, font=PHONE_FONT))


def presets(today: date, t: Callable[[str], str]) -> list[tuple[str, str]]:
    """Quick periods: this month and last by day, this year and the last 12 months by month."""
    month_start = today.replace(day=1)
    last_end = month_start - timedelta(days=1)
    year_ago = (month_start.replace(year=month_start.year - 1) + timedelta(days=31)).replace(day=1)
    choices = [("stats.this_month", month_start, today, "day"),
               ("stats.last_month", last_end.replace(day=1), last_end, "day"),
               ("stats.last_month_total", last_end.replace(day=1), last_end, "month"),
               ("stats.this_year", today.replace(month=1, day=1), today, "month"),
               ("stats.last_12_months", year_ago, today, "month")]
    return [(t(key), "?" + urlencode({"from": s.isoformat(), "to": e.isoformat(), "by": by}))
            for key, s, e, by in choices]


def pivot(stats: Statistics) -> dict[str, dict[str, dict[str, Any]]]:
    """dimension -> period -> key -> cell, for the tables of periods by key."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for d in stats.dimensions:
        grid: dict[str, dict[str, Any]] = {}
        for c in d.cells:
            grid.setdefault(c.period, {})[c.key] = c
        out[d.name] = grid
    return out


@routes.get("/stats")
@requires(Role.viewer)
@console_page
async def stats_page(request: web.Request) -> web.Response:
    services, period, stats = await _asked(request)
    t, lang = tr(request), page_lang(request)
    today = services.clock.now().astimezone(ZoneInfo(services.settings.timezone)).date()
    query = urlencode({"from": period.start.isoformat(), "to": period.end.isoformat(), "by": period.by})
    return aiohttp_jinja2.render_template("stats.html", request, {
        "s": stats, "chart": chart(stats, t),
        "grid": pivot(stats), "name": Names(services, t).of, "took": lambda v: duration(v, lang), "pct": percent,
        "presets": presets(today, t), "query": query, "t": t,
    })
