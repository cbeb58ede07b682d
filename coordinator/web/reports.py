"""The evaluation report of an incident over HTTP: JSON, or a printable page in the
reader's language (zh-CN, or English with `?lang=en`) with `?format=html` or
`Accept: text/html`; the drill report's page shares its words and helpers. Data reads
as it is stored in both languages: names, regions, role titles, the script's text."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from ..config.catalog import Catalog, Contacts
from ..config.schemas import Drill
from ..config.users import Role
from ..models import DrillRun
from ..reports.drill import DrillReport, run_text, stream_name
from ..reports.incident import incident_report
from ..reports.parts import IncidentReport
from .auth import requires
from .i18n import MESSAGES, translator
from .page import page_lang
from .state import SERVICES

routes = web.RouteTableDef()


def wants_html(request: web.Request) -> bool:
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in ("json", "html"):
            raise web.HTTPBadRequest(reason="query parameter 'format' must be json or html")
        return fmt == "html"
    return "text/html" in request.headers.get("Accept", "")


@routes.get("/api/incidents/{id}/report")
@requires(Role.viewer)
async def get_report(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    report = await incident_report(services.store, services.catalog.contacts, request.match_info["id"],
                                   services.clock)
    if not wants_html(request):
        return web.json_response(report.model_dump(mode="json"))
    context = page_context(report, services.catalog.contacts, services.catalog.categories,
                           services.settings.timezone, page_lang(request))
    return aiohttp_jinja2.render_template("report.html", request, context)


def page_context(
    report: IncidentReport | None, contacts: Contacts, categories: dict[str, str], tz_name: str, lang: str
) -> dict[str, Any]:
    """What report.html (and the incident part of drill_report.html) needs: the report,
    the translator `t` of `lang`, and how to show times (local), durations, rates, who
    acted and the names behind ids."""
    tz = ZoneInfo(tz_name)
    t = translator(lang)
    return {
        "r": report, "t": t, "tz_name": tz_name, "when": lambda at: local_time(at, tz),
        "took": lambda seconds: duration(seconds, lang), "pct": percent,
        "name": lambda pid: person_name(contacts, pid, lang), "actor": lambda who: actor_name(who, contacts, t, lang),
        "team": lambda tid: contacts.teams[tid].name if tid in contacts.teams else tid,
        "region": lambda r: contacts.regions[r].name if r in contacts.regions else r,
        "category": lambda c: categories.get(c, c),
    }


def drill_page_context(drill: Drill, reports: list[DrillReport], runs: list[DrillRun], catalog: Catalog,
                       tz_name: str, lang: str) -> dict[str, Any]:
    """What drill_report.html needs: the drill, its reports and runs, the latest run's
    incident report (page_context), and a run's notes in the page's language."""
    latest = reports[0].incident if reports else None
    everywhere = translator(lang)("all_regions")
    return page_context(latest, catalog.contacts, catalog.categories, tz_name, lang) | {
        "drill": drill, "reports": reports, "runs": runs,
        "run_note": lambda text: run_text(text, lambda key: stream_name(catalog, key, everywhere), lang),
    }


def actor_name(who: str, contacts: Contacts, t: Callable[[str], str], lang: str) -> str:
    """Who opened an incident or started a drill run, in words: the detector, a drill,
    the admin token, the scheduler, a network alarm's source, else the person."""
    if who == "surge-detector":
        return t("rpt.detector")
    if who.startswith("drill:"):
        return t("actor.drill")
    if who not in contacts.people and f"actor.{who}" in MESSAGES:
        return t(f"actor.{who}")
    return person_name(contacts, who, lang)


def local_time(at: datetime | None, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if at is not None else "—"


def duration(seconds: float | None, lang: str = "zh") -> str:
    """12秒, 3分05秒, 2小时04分 (in English 12 s, 3 min 05 s, 2 h 04 min): what a reader
    of the printed page compares."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if lang != "zh":
        return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
    if hours:
        return f"{hours}小时{minutes:02d}分"
    if minutes:
        return f"{minutes}分{secs:02d}秒"
    return f"{secs}秒"


def person_name(contacts: Contacts, person_id: str | None, lang: str = "zh") -> str:
    if person_id is None:
        return "—"
    person = contacts.people.get(person_id)
    if person is None:
        return person_id
    return f"{person.name}（{person_id}）" if lang == "zh" else f"{person.name} ({person_id})"


def percent(rate: float | None) -> str:
    return f"{rate * 100:.1f}%" if rate is not None else "—"
