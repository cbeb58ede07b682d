"""The incident page: surge chart, roles, the wording's versions with their differences
and an editor for the next one, the delivery and acknowledgement board per team and
region, the timeline; live through /events?incident=ID. Every action on it calls the
JSON API (static/console.js), which checks the role again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

from ...errors import IncidentNotFound
from ...models import Incident, ScriptKind, ScriptVersion, TimelineEvent, bucket_start, stream_key, utc
from ...reports.incident import build_report
from ...config.users import Role
from .. import sse
from ..auth import requires
from ..charts import Mark, bar_chart
from ..page import Readable, console_page, readable, tr
from ..previews import next_version
from ..state import SERVICES, Services
from ..textdiff import Piece, changed, inline_diff, text_diff

routes = web.RouteTableDef()

BEFORE_ONSET = timedelta(hours=2)
AFTER_RESOLVED = timedelta(hours=1)
MAX_BUCKETS = 72


@dataclass(frozen=True)
class Comparison:
    old: ScriptVersion
    new: ScriptVersion
    sms: list[Piece]
    subject: list[Piece]
    text: list[Piece]

    @property
    def same(self) -> bool:
        return not (changed(self.sms) or changed(self.subject) or changed(self.text))


def compare(old: ScriptVersion, new: ScriptVersion) -> Comparison:
    return Comparison(old, new, inline_diff(old.sms, new.sms), inline_diff(old.email_subject, new.email_subject),
                      text_diff(old.email_text, new.email_text))


def pick_comparison(scripts: list[ScriptVersion], query: dict[str, str]) -> Comparison | None:
    """The pair `?from=&to=` names, else the newest version of the wording against the
    one before it."""
    by_number = {v.version: v for v in scripts}
    try:
        old, new = by_number.get(int(query.get("from", ""))), by_number.get(int(query.get("to", "")))
    except ValueError:
        old = new = None
    if old is not None and new is not None:
        return compare(old, new)
    wording = [v for v in scripts if v.kind == ScriptKind.script]
    return compare(wording[-2], wording[-1]) if len(wording) >= 2 else None


async def surge_chart(services: Services, incident: Incident, rd: Readable, t: Any) -> Markup:
    """The incident's stream from a while before the onset until now (or a while after
    resolution), with the onset, opening and resolution marked."""
    stream = incident.surge_key or stream_key(incident.category, incident.region)
    width = services.settings.bucket_seconds
    now = services.clock.now()
    begin = (incident.surge.onset if incident.surge else incident.opened_at) - BEFORE_ONSET
    end = min(now, incident.resolved_at + AFTER_RESOLVED) if incident.resolved_at else now
    last = bucket_start(end, width)
    first = max(bucket_start(begin, width), last - (MAX_BUCKETS - 1) * width)
    starts = list(range(first, last + width, width))
    counts = await services.store.bucket_counts(stream, utc(first), utc(last + width))
    status = await services.monitor.status(stream)

    def index(at: datetime | None) -> int:
        return -1 if at is None else (bucket_start(at, width) - first) // width

    marks = [Mark(index(incident.surge.onset if incident.surge else None), t("chart.onset")),
             Mark(index(incident.opened_at), t("chart.opened")), Mark(index(incident.resolved_at), t("chart.resolved"))]
    return bar_chart([counts.get(s, 0) for s in starts], labels=[rd.when(utc(s), "%H:%M") for s in starts],
                     baseline=status.expected, marks=marks, title=rd.stream(stream),
                     baseline_label=t("chart.baseline"), filling_last=incident.resolved_at is None,
                     width=720, height=160)


def editor_start(scripts: list[ScriptVersion], incident: Incident) -> dict[str, str]:
    """The parameters the editor opens with: those of the newest version of the
    wording, a missing one left empty (not its placeholder)."""
    wording = [v for v in scripts if v.kind == ScriptKind.script]
    if not wording:
        return {k: str(v) for k, v in incident.params.items()}
    latest = wording[-1]
    return {k: ("" if k in latest.missing else v) for k, v in latest.params.items()}


def timeline_line(event: TimelineEvent, rd: Readable) -> str:
    """A short, readable summary of an event's data (names for person ids)."""
    data = event.data
    if event.kind == "role_assigned":
        return f"{data.get('role')}: {rd.person(data.get('person'))}"
    if event.kind == "escalated":
        return f"{data.get('role')}: {rd.person(data.get('from'))} → {rd.person(data.get('to'))}"
    if event.kind in ("audience_reminder", "audience_supervisor"):
        return f"v{data.get('version')}: {len(data.get('not_acknowledged', []))} · {data.get('messages')}"
    if event.kind == "script_sent":
        return f"v{data.get('version')}: {data.get('deliveries')} / {data.get('recipients')}"
    if event.kind in ("script_drafted", "script_approved", "script_acked", "remind_requested"):
        extra = f" ({data['via']})" if "via" in data else ""
        return f"v{data.get('version')}{extra}"
    if event.kind == "status":
        return str(data.get("status", "")) + (f" — {data['note']}" if data.get("note") else "")
    if event.kind == "note":
        return str(data.get("text", ""))
    if event.kind == "alert":
        return str(data.get("message", ""))
    if event.kind == "delivery_failed":
        return f"{rd.person(data.get('person'))}: {data.get('error')} → {data.get('fallback') or '—'}"
    return ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, (dict, list)))


@routes.get("/incidents/{id}")
@requires(Role.viewer)
@console_page
async def incident_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    t = tr(request)
    rd = readable(request, t)
    try:
        incident = await services.store.get_incident(request.match_info["id"])
    except IncidentNotFound as exc:
        return aiohttp_jinja2.render_template("refused.html", request, {"status": 404, "message": str(exc)},
                                              status=404)
    timeline = await services.store.timeline(incident.id)
    deliveries = await services.store.deliveries(incident.id)
    acks = await services.store.acks(incident.id)
    now = services.clock.now()
    report = build_report(incident, timeline=timeline, deliveries=deliveries, acks=acks,
                          contacts=services.catalog.contacts, surges=[], now=now)
    playbook = incident.plan
    start = editor_start(incident.scripts, incident)
    draft = next_version(services.catalog, incident, start, {}, now=now, tz=ZoneInfo(services.settings.timezone))
    summary = await sse.incident_summary(services, incident.id)
    return aiohttp_jinja2.render_template("incident.html", request, {
        "i": incident, "rd": rd, "now": now, "report": report, "acks": report.acks,
        "chart": await surge_chart(services, incident, rd, t),
        "versions": list(reversed(incident.scripts)), "comparison": pick_comparison(incident.scripts, dict(request.query)),
        "params": playbook.script.params, "start": start, "draft": draft, "approval": playbook.script.approval,
        "timeline": list(reversed(timeline)), "line": lambda e: timeline_line(e, rd),
        "fingerprint": summary["fingerprint"],
        "waiting_in": lambda key, value: [p for p in report.acks.never_acked
                                          if (value in p.teams if key == "team" else p.region == value)],
    })
