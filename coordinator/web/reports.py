"""The evaluation report of an incident over HTTP: JSON, or a printable page (zh-CN)
with `?format=html` or `Accept: text/html`."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from ..config.catalog import Contacts
from ..config.users import Role
from ..reports.incident import incident_report
from ..reports.parts import IncidentReport
from .auth import requires
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
                           services.settings.timezone)
    return aiohttp_jinja2.render_template("report.html", request, context)


def page_context(
    report: IncidentReport, contacts: Contacts, categories: dict[str, str], tz_name: str
) -> dict[str, Any]:
    """What report.html needs: the report, and how to show times (local), durations,
    rates and the names behind ids."""
    tz = ZoneInfo(tz_name)
    return {
        "r": report, "tz_name": tz_name, "when": lambda at: local_time(at, tz),
        "took": duration, "pct": percent, "name": lambda pid: person_name(contacts, pid),
        "team": lambda t: contacts.teams[t].name if t in contacts.teams else t,
        "region": lambda r: contacts.regions[r].name if r in contacts.regions else r,
        "category": lambda c: categories.get(c, c),
    }


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


def person_name(contacts: Contacts, person_id: str | None) -> str:
    if person_id is None:
        return "—"
    person = contacts.people.get(person_id)
    return f"{person.name}（{person_id}）" if person else person_id


def percent(rate: float | None) -> str:
    return f"{rate * 100:.1f}%" if rate is not None else "—"
