"""The drills page: each drill's schedule, its next firings and last runs, a button to
run it now (trainer; POST /api/drills/{id}/run) and its reports with trends
(GET /api/drills/{id}/reports?format=html). A running drill shows its progress live
(the page follows /events): the synthetic complaints fed so far out of those planned,
and when its playbook is triggered directly if detection has not opened an incident;
the drill's incident page shows the same."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiohttp_jinja2
from aiohttp import web

from ...config.schemas import Drill, SurgeScenario
from ...config.users import Role
from ...drills import next_firings, surge_plan
from ...models import DrillRun, DrillRunStatus
from ..auth import requires
from ..page import console_page, readable, tr
from ..state import SERVICES, Services
from .. import sse

routes = web.RouteTableDef()

LAST_RUNS = 5
# How a run's end reads (drills.Drills._finish); another reason is shown on hover.
END_REASONS = {"all acknowledged": "drills.end_all_acked", "time is up": "drills.end_time_up",
               "the incident was resolved by hand": "drills.end_by_hand",
               "the drill was removed from drills/": "drills.end_removed"}


@dataclass(frozen=True)
class DrillProgress:
    run: DrillRun
    planned: int | None  # synthetic complaints a surge run feeds in all (None: a direct trigger)
    fed: int
    feeding_until: datetime | None
    # When the playbook is triggered directly if no incident has opened by then (None:
    # one has, or the scenario triggers directly anyway).
    fallback_at: datetime | None
    ends_by: datetime


def drill_progress(run: DrillRun, drill: Drill, bucket_seconds: int) -> DrillProgress:
    """Where a run stands, from what Drills.progress records: the plan is the same
    wherever it is computed (seeded by the run id), so "fed" counts against it."""
    scenario = drill.scenario
    ends_by = run.started_at + drill.max_duration
    if not isinstance(scenario, SurgeScenario) or run.base_rate is None:
        return DrillProgress(run, None, run.fed, None, None, ends_by)
    planned = len(surge_plan(run, scenario, run.base_rate, bucket_seconds))
    until = run.started_at + scenario.duration
    return DrillProgress(run, planned, min(run.fed, planned), until, until if run.incident_id is None else None, ends_by)


async def run_progress(services: Services, run_id: str | None) -> DrillProgress | None:
    """The progress of a running run (None when it is not running or not known)."""
    run = await services.store.get_drill_run(run_id) if run_id else None
    drill = services.catalog.drills.get(run.drill_id) if run else None
    if run is None or drill is None or run.status != DrillRunStatus.running:
        return None
    return drill_progress(run, drill, services.store.bucket_seconds)


@routes.get("/drills")
@requires(Role.viewer)
@console_page
async def drills_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    now = services.clock.now()
    drills = []
    for drill in sorted(services.catalog.drills.values(), key=lambda d: d.id):
        runs = sorted(await services.store.drill_runs(drill.id), key=lambda r: r.started_at, reverse=True)
        running = [drill_progress(r, drill, services.store.bucket_seconds) for r in runs
                   if r.status == DrillRunStatus.running]
        playbook = services.catalog.playbooks.get(drill.scenario.playbook)
        drills.append({"drill": drill, "next": next_firings(drill, now, 3), "runs": runs[:LAST_RUNS],
                       "total": len(runs), "running": running,
                       "playbook": playbook.title if playbook else drill.scenario.playbook})
    summary = await sse.overview_summary(services)
    return aiohttp_jinja2.render_template("drills.html", request, {
        "rd": readable(request, tr(request)), "drills": drills, "end_reasons": END_REASONS,
        "fingerprint": summary["fingerprint"],
    })
