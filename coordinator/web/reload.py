"""POST /api/admin/reload: reload the config files on every instance sharing the store
(cluster.py). Asked with the admin token or by a leader (the top user role: no user
role is above it; a trainer or viewer is 403, the anonymous 401). The answer waits (`?wait=` seconds, default
10, at most 60) for every live instance and lists each one's outcome:

- 200 `took`: every live instance took the new config;
- 409 `reload_refused`: at least one refused (the files have problems; each refusing
  instance keeps the config it had and names the problems), in the error shape with the
  same report beside it;
- 202 `incomplete`: none refused, some did not answer within the wait (the request
  stands: they answer it at their next look)."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from ..cluster import CLUSTER, MAX_WAIT_SECONDS, WAIT_SECONDS, ReloadReport
from ..config.users import Role
from .auth import acting_person, requires
from .errors import error_response

routes = web.RouteTableDef()


def _wait(request: web.Request) -> float | None:
    raw = request.query.get("wait")
    if raw is None:
        return WAIT_SECONDS
    try:
        wait = float(raw)
    except ValueError:
        return None
    return wait if math.isfinite(wait) and 0 <= wait <= MAX_WAIT_SECONDS else None


def report_json(report: ReloadReport) -> dict[str, Any]:
    instances: list[dict[str, Any]] = [
        {"instance": o.instance, "outcome": "took" if o.took else "refused", "problems": o.problems,
         "config": o.config, "at": o.at.isoformat()}
        for o in [*report.took, *report.refused]]
    instances += [{"instance": i.id, "outcome": "no_answer", "problems": [], "config": i.config,
                   "at": i.seen_at.isoformat()} for i in report.silent]
    return {
        "id": report.request.id, "by": report.request.by, "requested_at": report.request.at.isoformat(),
        "result": report.result,
        "took": [o.instance for o in report.took],
        "refused": [o.instance for o in report.refused],
        "no_answer": [i.id for i in report.silent],
        "instances": sorted(instances, key=lambda i: i["instance"]),
    }


@routes.post("/api/admin/reload")
@requires(Role.leader)
async def reload_everywhere(request: web.Request) -> web.StreamResponse:
    wait = _wait(request)
    if wait is None:
        return error_response(400, "invalid_wait", f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}",
                              [{"field": "wait"}])
    report = await request.app[CLUSTER].reload_everywhere(acting_person(request), wait)
    body = report_json(report)
    if report.result == "refused":
        problems = sorted({p for o in report.refused for p in o.problems})
        return error_response(409, "reload_refused",
                              f"{len(report.refused)} instance(s) refused the config files; they keep the config "
                              "they had", problems, reload=body)
    return web.json_response(body, status=202 if report.result == "incomplete" else 200)
