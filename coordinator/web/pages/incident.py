"""The incident page: surge chart, roles, the wording's versions with their differences
and an editor for the next one, the delivery and acknowledgement board per team and
region, the timeline; live through /events?incident=ID. At the top, what needs the
leader now (attention.py) and the leader's controls; events and alerts in words
(incident_text.py). Every action on it calls the
JSON API (static/console.js), which checks the role again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

from ...errors import IncidentNotFound
from ...models import Incident, ScriptKind, ScriptVersion, bucket_start, stream_key, utc
from ...playbooks import SEVERITY_ORDER
from ...roster import playbook_level
from ...reports.incident import build_report
from ...config.users import Role
from .. import sse
from ..auth import requires
from ..charts import PHONE_FONT, PHONE_WIDTH, Mark, bar_chart, for_screens
from ..page import Readable, console_page, readable, tr
from ..previews import next_version
from ..state import SERVICES, Services
from ..textdiff import Piece, changed, inline_diff, text_diff
from .attention import attention, not_acknowledged, version_boards
from .drills import run_progress
from .incident_text import (actor_text, event_actor, event_label, level_text, open_alerts, param_labels,
                            timeline_line)

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
    draw = partial(bar_chart, [counts.get(s, 0) for s in starts], labels=[rd.when(utc(s), "%H:%M") for s in starts],
                   baseline=status.expected, marks=marks, title=rd.stream(stream),
                   baseline_label=t("chart.baseline"), filling_last=incident.resolved_at is None)
    return for_screens(draw(width=720, height=160), draw(width=PHONE_WIDTH, height=150, font=PHONE_FONT))


def editor_start(scripts: list[ScriptVersion], incident: Incident) -> dict[str, str]:
    """The parameters the editor opens with: those of the newest version of the
    wording, a missing one left empty (not its placeholder)."""
    wording = [v for v in scripts if v.kind == ScriptKind.script]
    if not wording:
        return {k: str(v) for k, v in incident.params.items()}
    latest = wording[-1]
    return {k: ("" if k in latest.missing else v) for k, v in latest.params.items()}


def ack_choices(incident: Incident, rd: Readable, t: Any) -> list[tuple[str, str]]:
    """The people a leader may acknowledge for (their roles, not yet acknowledged, as
    the ack API takes them): (person id, "陈丽（组长、副组长）", in the page's language)."""
    roles: dict[str, list[str]] = {}
    for r in incident.roles:
        if r.acked_at is None and r.holder is not None:
            roles.setdefault(r.holder, []).append(r.title)
    return [(p, f"{rd.person(p)}{t('rpt.paren_open')}{t('stream.list_sep').join(titles)}{t('rpt.paren_close')}")
            for p, titles in roles.items()]


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
    alerts = open_alerts(incident, timeline, rd, t)
    boards = version_boards(incident, deliveries, acks)
    return aiohttp_jinja2.render_template("incident.html", request, {
        "needs": attention(incident, not_acknowledged(incident, deliveries, acks), now, alerts),
        "drill_run": await run_progress(services, incident.drill_run), "severities": SEVERITY_ORDER,
        "ack_choices": ack_choices(incident, rd, t), "level": lambda r: level_text(playbook_level(r), t),
        "board_now": next((b for b in boards if b.version == report.acks.version), None),
        "boards_before": [b for b in boards if b.version != report.acks.version],
        "who": lambda actor: actor_text(actor, rd, t), "labels": lambda names: param_labels(incident, names, t),
        "i": incident, "rd": rd, "now": now, "report": report, "acks": report.acks,
        "chart": await surge_chart(services, incident, rd, t),
        "versions": list(reversed(incident.scripts)), "comparison": pick_comparison(incident.scripts, dict(request.query)),
        "params": playbook.script.params, "param_labels": {n: p.label for n, p in playbook.script.params.items()},
        "start": start, "draft": draft, "approval": playbook.script.approval,
        "timeline": list(reversed(timeline)), "line": lambda e: timeline_line(e, incident, rd, t),
        "actor": lambda e: event_actor(e, rd, t), "event_label": lambda e: event_label(e.kind, t),
        "fingerprint": summary["fingerprint"],
        "waiting_in": lambda key, value: [p for p in report.acks.never_acked
                                          if (value in p.teams if key == "team" else p.region == value)],
    })
