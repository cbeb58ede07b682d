"""The trigger page: a leader opens an incident by hand from a playbook, with its
parameters, seeing the script's version 1 before sending anything (previews.py)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from ...models import ALL_REGIONS
from ...playbooks import SEVERITY_ORDER
from ...config.users import Role
from ..auth import requires
from ..page import console_page, readable, tr
from ..previews import first_version
from ..state import SERVICES

routes = web.RouteTableDef()


@routes.get("/trigger")
@requires(Role.viewer)
@console_page
async def trigger_page(request: web.Request) -> web.Response:
    """`?playbook=ID` chooses the playbook (the form is the chosen playbook's). Like
    every page it only reads: others than leaders see the playbooks and what their
    script says, without the button (and the API would refuse them anyway)."""
    services = request.app[SERVICES]
    catalog = services.catalog
    t = tr(request)
    playbooks = sorted(catalog.playbooks.values(), key=lambda p: p.title)
    chosen = catalog.playbooks.get(request.query.get("playbook", "")) or (playbooks[0] if playbooks else None)
    regions = sorted(catalog.contacts.regions.values(), key=lambda r: r.id)
    preview, region = None, ALL_REGIONS
    if chosen is not None:
        # A first look before anything is typed: defaults in, missing ones as placeholders.
        region = (chosen.trigger.regions or [r.id for r in regions] or [ALL_REGIONS])[0]
        preview = first_version(catalog, chosen, region, {}, drill=False, severity=None,
                                now=services.clock.now(), tz=ZoneInfo(services.settings.timezone))
    return aiohttp_jinja2.render_template("trigger.html", request, {
        "rd": readable(request, t), "playbooks": playbooks, "chosen": chosen, "regions": regions,
        "severities": SEVERITY_ORDER, "preview": preview, "region": region,
        "everywhere": ALL_REGIONS,  # the live preview names missing parameters by these labels (console.js)
        "param_labels": {n: p.label for n, p in chosen.script.params.items()} if chosen else {},
    })
