"""Previews of the official script, rendered and counted but never saved: what version 1
of a playbook would say before anyone triggers it (the trigger page), and what the
next version of an incident's wording would say (the incident page's editor). Same
templates, same parameter rules and the same SMS count as the real thing."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from ..config.catalog import Catalog
from ..errors import PlaybookNotFound
from ..models import ALL_REGIONS, Incident, ScriptKind, ScriptVersion
from ..playbooks import SEVERITY_ORDER
from ..config.schemas import Playbook
from ..scripts import Rendered
from ..segments import sms_segments
from ..config.users import Role
from ..wording import compose
from .auth import requires
from .errors import error_response
from .incidents import json_body, text_field
from .state import SERVICES

routes = web.RouteTableDef()

TEXT_FIELDS = ("sms", "email_subject", "email_text", "email_html")
PREVIEW_AUTHOR = "preview"


def _region_name(catalog: Catalog, region: str) -> str:
    found = catalog.contacts.regions.get(region)
    return found.name if found else "全省"  # as Publication.draft names a region-less incident


def with_texts(version: ScriptVersion, texts: dict[str, str]) -> ScriptVersion:
    """The leader's own texts in place of the rendered ones, hash and SMS count redone
    (the rule Publication.draft applies)."""
    merged = {f: texts.get(f, getattr(version, f)) for f in TEXT_FIELDS}
    rendered = Rendered(**merged)
    encoding, segments, _ = sms_segments(rendered.sms)
    return version.model_copy(update={**merged, "content_hash": rendered.content_hash, "sms_encoding": encoding,
                                      "sms_segments": segments})


def next_version(catalog: Catalog, incident: Incident, params: dict[str, str], texts: dict[str, str],
                 *, now: datetime, tz: ZoneInfo) -> ScriptVersion:
    """The version a draft with these parameters and texts would add to `incident`."""
    playbook = incident.plan
    version = compose(catalog.templates, playbook, incident, kind=ScriptKind.script,
                      params={**incident.params, **params}, author=PREVIEW_AUTHOR, now=now, tz=tz,
                      region_name=_region_name(catalog, incident.region),
                      category_name=catalog.categories.get(incident.category, incident.category))
    return with_texts(version, texts) if texts else version


def first_version(catalog: Catalog, playbook: Playbook, region: str, params: dict[str, str], *, drill: bool,
                  severity: str | None, now: datetime, tz: ZoneInfo) -> ScriptVersion:
    """Version 1 of an incident the playbook would open in `region` now. The id is a
    stand-in of the real one's length, so the SMS count holds."""
    stand_in = Incident(
        id=f"{'DRL' if drill else 'INC'}-{now.astimezone(tz):%Y%m%d}-xxxxxx", playbook=playbook.id,
        title=playbook.title, severity=severity or playbook.severity.default,
        category=playbook.trigger.categories[0], region=region, drill=drill, opened_at=now,
        opened_by=PREVIEW_AUTHOR, updated_at=now,
    )
    return next_version(catalog, stand_in.model_copy(update={"playbook_snapshot": playbook}),
                        params, {}, now=now, tz=tz)


def _strings(body: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    params = body.get("params", {})
    texts = {k: body[k] for k in TEXT_FIELDS if k in body}
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in [*params.values(), *texts.values()]):
        raise web.HTTPBadRequest(reason="'params' must map names to strings, and texts be strings")
    return params, texts


@routes.post("/api/playbooks/{id}/preview")
@requires(Role.leader)
async def preview_playbook(request: web.Request) -> web.Response:
    """Version 1 as the playbook would render it for `region` and `params` (missing
    required parameters show as placeholders and are listed in `missing`)."""
    services = request.app[SERVICES]
    catalog = services.catalog
    playbook = catalog.playbooks.get(request.match_info["id"])
    if playbook is None:
        raise PlaybookNotFound(request.match_info["id"])
    body = await json_body(request)
    params, _ = _strings(body)
    region = text_field(body, "region", required=True)
    if region != ALL_REGIONS and region not in catalog.contacts.regions:
        return error_response(400, "bad_request", f"unknown region '{region}'")
    severity = body.get("severity") or None
    if severity is not None and severity not in SEVERITY_ORDER:
        return error_response(400, "bad_request", f"unknown severity '{severity}'")
    drill = body.get("drill", False)
    if not isinstance(drill, bool):
        return error_response(400, "bad_request", "'drill' must be true or false")
    known = {k: v for k, v in params.items() if k in playbook.script.params}
    version = first_version(catalog, playbook, region, known, drill=drill, severity=severity,
                            now=services.clock.now(), tz=ZoneInfo(services.settings.timezone))
    return web.json_response(version.model_dump(mode="json"))


@routes.post("/api/incidents/{id}/scripts/preview")
@requires(Role.leader)
async def preview_script(request: web.Request) -> web.Response:
    """The next version as POST /api/incidents/{id}/scripts would draft it, not saved."""
    services = request.app[SERVICES]
    incident = await services.store.get_incident(request.match_info["id"])
    params, texts = _strings(await json_body(request))
    version = next_version(services.catalog, incident, params, texts, now=services.clock.now(),
                           tz=ZoneInfo(services.settings.timezone))
    return web.json_response(version.model_dump(mode="json"))
