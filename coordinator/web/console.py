"""The console: server-rendered pages for the leadership and trainers, and the event
stream that keeps them live.

    /                  overview: streams against their baselines, open surges and incidents
    /incidents/{id}    one incident: roles, the wording's versions, board, timeline
    /trigger           open an incident by hand (leader), with a preview of the script
    /drills            drills: schedule, next and last runs, run now (trainer)
    /events            server-sent events: `?incident=ID` for one incident, else the overview

Pages only read; their buttons call the JSON API (static/console.js), whose routes
check the role again, so a page never holds a right the API would refuse."""

from __future__ import annotations

from typing import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web

from ..config.users import Role
from . import sse
from .pages import drills as pages_drills
from .pages import incident as pages_incident
from .pages import overview as pages_overview
from .pages import trigger as pages_trigger
from .auth import requires, signed_route
from .page import nav_context
from .state import SERVICES

routes = web.RouteTableDef()

INCIDENT_POLL_SECONDS = 1.0  # acks should show within a second or two
OVERVIEW_POLL_SECONDS = 2.0


@routes.get("/events")
@requires(Role.viewer)
async def events(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    incident_id = request.query.get("incident")
    summary: Callable[[], Awaitable[sse.Summary]]
    if incident_id:
        await services.store.get_incident(incident_id)  # 404 now, not an empty stream
        summary, every = (lambda: sse.incident_summary(services, incident_id)), INCIDENT_POLL_SECONDS
    else:
        summary, every = (lambda: sse.overview_summary(services)), OVERVIEW_POLL_SECONDS
    return await sse.stream(request, summary, every)


def setup(app: web.Application) -> None:
    """Call after aiohttp_jinja2.setup: the pages, the event stream, and the nav context
    for every page (the console's and the others')."""
    for table in (pages_overview.routes, pages_incident.routes, pages_trigger.routes, pages_drills.routes, routes):
        app.add_routes(table)
    sse.setup(app)
    app[aiohttp_jinja2.APP_CONTEXT_PROCESSORS_KEY] = [nav_context]
    app.middlewares.append(page_context)


@web.middleware
async def page_context(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
    """aiohttp_jinja2's context processors, except on signed routes (the webhooks, three
    per SMS in a fan-out), which render no page."""
    if signed_route(request):
        return await handler(request)
    return await aiohttp_jinja2.context_processors_middleware(request, handler)
