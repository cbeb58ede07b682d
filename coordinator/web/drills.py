"""Drills over HTTP: the list with schedules and next runs, run one now (trainer),
and the reports of a drill's runs with their trend, as JSON or a printable page."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from ..reports.drill import load_drill_reports
from ..drills import next_firings
from ..errors import DrillNotFound, DrillRefused
from ..config.schemas import Drill
from ..config.users import Role
from .api import api_error
from .auth import requires
from .errors import error_response
from .incidents import actor, json_body
from .page import page_lang
from .reports import drill_page_context, wants_html
from .state import SERVICES, Services

routes = web.RouteTableDef()


def drill_view(drill: Drill, services: Services) -> dict[str, Any]:
    scenario = drill.scenario
    return {
        "id": drill.id, "title": drill.title, "schedule": drill.schedule, "timezone": drill.timezone,
        "scenario": scenario.kind, "playbook": scenario.playbook, "region": scenario.region,
        "channels": drill.channels, "max_duration": drill.max_duration.total_seconds(),
        "success": {"ack_within": drill.success.ack_within.total_seconds(), "min_ack_rate": drill.success.min_ack_rate},
        "audience": drill.audience.model_dump() if drill.audience else None,
        "next_runs": [t.isoformat() for t in next_firings(drill, services.clock.now(), 3)],
    }


def _drill(services: Services, drill_id: str) -> Drill:
    try:
        return services.drills.drill(drill_id)
    except DrillNotFound as exc:
        raise api_error(web.HTTPNotFound, "not_found", str(exc)) from None


@routes.get("/api/drills")
@requires(Role.viewer)
async def list_drills(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    runs = await services.store.drill_runs()
    views = []
    for drill in sorted(services.catalog.drills.values(), key=lambda d: d.id):
        last = next((r for r in runs if r.drill_id == drill.id), None)
        views.append(drill_view(drill, services) | {"last_run": last.model_dump(mode="json") if last else None})
    return web.json_response({"drills": views})


@routes.post("/api/drills/{id}/run")
@requires(Role.trainer)
async def run_drill(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    drill = _drill(services, request.match_info["id"])
    try:
        run = await services.drills.start(drill.id, how="manual", by=actor(request, await json_body(request)))
    except DrillRefused as exc:
        return error_response(409, "drill_refused", str(exc))
    if run is None:  # a manual run's id is random: only a collision of 48 bits lands here
        return error_response(409, "drill_refused", f"drill {drill.id}: a run with the same id exists; try again")
    services.outbox.wake.set()
    return web.json_response({"run": run.model_dump(mode="json")}, status=201)


@routes.get("/api/drills/{id}/reports")
@requires(Role.viewer)
async def drill_reports(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    drill = _drill(services, request.match_info["id"])
    html = wants_html(request)
    reports = await load_drill_reports(services.store, services.catalog, drill, services.clock)
    runs = await services.store.drill_runs(drill.id)
    if not html:
        return web.json_response({
            "drill": drill_view(drill, services),
            "runs": [r.model_dump(mode="json") for r in runs],
            "reports": [r.model_dump(mode="json") for r in reports],
        })
    context = drill_page_context(drill, reports, runs, services.catalog, services.settings.timezone,
                                 page_lang(request))
    return aiohttp_jinja2.render_template("drill_report.html", request, context)
