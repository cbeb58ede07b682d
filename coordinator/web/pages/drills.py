"""The drills page: each drill's schedule, its next firings and last runs, a button to
run it now (trainer; POST /api/drills/{id}/run) and its reports with trends
(GET /api/drills/{id}/reports?format=html)."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from ...drills import next_firings
from ...config.users import Role
from ..auth import requires
from ..page import console_page, readable, tr
from ..state import SERVICES

routes = web.RouteTableDef()

LAST_RUNS = 5


@routes.get("/drills")
@requires(Role.viewer)
@console_page
async def drills_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    now = services.clock.now()
    drills = []
    for drill in sorted(services.catalog.drills.values(), key=lambda d: d.id):
        runs = sorted(await services.store.drill_runs(drill.id), key=lambda r: r.started_at, reverse=True)
        drills.append({"drill": drill, "next": next_firings(drill, now, 3), "runs": runs[:LAST_RUNS],
                       "total": len(runs)})
    return aiohttp_jinja2.render_template("drills.html", request, {
        "rd": readable(request, tr(request)), "drills": drills,
    })
