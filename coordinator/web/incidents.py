"""Incidents over HTTP: manual trigger, list, detail with roles and timeline, role acks,
severity, notes, resolve."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..clock import iso as _iso
from ..errors import BodyError
from ..intake import holds_lone_surrogate, read_json
from ..models import Incident, RoleAssignment, ScriptKind
from ..roster import playbook_level
from ..config.users import Role
from .api import bad_request
from .auth import acting_person, requires
from .errors import error_response
from .state import SERVICES

routes = web.RouteTableDef()


def role_view(role: RoleAssignment) -> dict[str, Any]:
    """A role as the API shows it."""
    return {
        "role": role.role, "title": role.title, "holder": role.holder, "level": playbook_level(role), "chain": role.chain,
        "deadline": _iso(role.deadline), "acked": role.acked_at is not None, "acked_by": role.acked_by,
        "acked_at": _iso(role.acked_at), "unfilled": role.unfilled, "gaps": role.gaps,
    }


def incident_view(incident: Incident, timeline: list[Any] | None = None) -> dict[str, Any]:
    body = incident.model_dump(mode="json", exclude={"playbook_snapshot", "roles"})
    body["roles"] = [role_view(r) for r in incident.roles]
    if timeline is not None:
        body["timeline"] = [e.model_dump(mode="json") for e in timeline]
    return body


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body's JSON object; none (or an empty body) is {}. Anything else is a 400 in
    the error shape: `invalid_body` (not UTF-8, not an object) or `invalid_json` (read by
    intake.read_json, so no body can make the handler fail; and no string may hold half
    a surrogate pair, which JSON escapes allow but nothing downstream can encode)."""
    if not request.body_exists:  # (not can_read_body: the body may have been read already, see guard.py)
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
        data = read_json(text)
    except UnicodeDecodeError as exc:
        raise bad_request("invalid_body", f"body is not UTF-8 (byte {exc.start})") from None
    except BodyError as exc:
        raise bad_request(exc.code, f"body is {exc}") from None
    if holds_lone_surrogate(text, data):
        raise bad_request("invalid_json", "body is not text: a string holds half of a surrogate pair (\\ud800-\\udfff)")
    if not isinstance(data, dict):
        raise bad_request("invalid_body", "body must be a JSON object")
    return data


def text_field(body: dict[str, Any], name: str, *, required: bool = False, default: str = "") -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or (required and not value.strip()):
        raise web.HTTPBadRequest(reason=f"'{name}' must be a non-empty string" if required else f"'{name}' must be a string")
    return value.strip()


def actor(request: web.Request, body: dict[str, Any]) -> str:
    """Who acts: the signed-in user or the token's owner; only the admin token may name
    the person in the body's `by`."""
    return acting_person(request, text_field(body, "by"))


def _flag(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise web.HTTPBadRequest(reason=f"query parameter '{name}' must be true or false")


@routes.post("/api/incidents")
@requires(Role.leader)
async def create_incident(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await json_body(request)
    params = body.get("params", {})
    if not isinstance(params, dict):
        return error_response(400, "invalid_params", "'params' must be an object")
    drill = body.get("drill", False)
    if not isinstance(drill, bool):
        return error_response(400, "bad_request", "'drill' must be true or false")
    opened = await services.pipeline.trigger(
        text_field(body, "playbook", required=True),
        region=text_field(body, "region", required=True),
        params=params,
        drill=drill,
        severity=body.get("severity"),
        actor=actor(request, body),
    )
    timeline = await services.store.timeline(opened.incident.id)
    view = incident_view(opened.incident, timeline) | {"existing": not opened.created}
    return web.json_response(view, status=201 if opened.created else 200)


@routes.get("/api/incidents")
@requires(Role.viewer)
async def list_incidents(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    found = await services.store.list_incidents(
        open_only=_flag(request, "open"), drill=_flag(request, "drill"), playbook=request.query.get("playbook")
    )
    return web.json_response({"incidents": [incident_view(i) for i in found]})


@routes.get("/api/incidents/{id}")
@requires(Role.viewer)
async def get_incident(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    incident = await services.store.get_incident(request.match_info["id"])
    return web.json_response(incident_view(incident, await services.store.timeline(incident.id)))


@routes.post("/api/incidents/{id}/ack")
@requires(Role.leader)
async def ack(request: web.Request) -> web.Response:
    body = await json_body(request)
    incident = await request.app[SERVICES].pipeline.ack_role(
        request.match_info["id"], text_field(body, "person", required=True),
        role=text_field(body, "role") or None, via=text_field(body, "via", default="api") or "api",
    )
    return web.json_response(incident_view(incident))


@routes.post("/api/incidents/{id}/resolve")
@requires(Role.leader)
async def resolve(request: web.Request) -> web.Response:
    body = await json_body(request)
    incident = await request.app[SERVICES].pipeline.resolve(
        request.match_info["id"], actor(request, body), text_field(body, "note")
    )
    return web.json_response(incident_view(incident))


@routes.post("/api/incidents/{id}/severity")
@requires(Role.leader)
async def severity(request: web.Request) -> web.Response:
    body = await json_body(request)
    incident = await request.app[SERVICES].pipeline.set_severity(
        request.match_info["id"], text_field(body, "severity", required=True),
        actor(request, body), text_field(body, "reason"),
    )
    return web.json_response(incident_view(incident))


@routes.post("/api/incidents/{id}/notes")
@requires(Role.leader)
async def note(request: web.Request) -> web.Response:
    body = await json_body(request)
    incident_id = request.match_info["id"]
    await request.app[SERVICES].pipeline.add_note(
        incident_id, actor(request, body), text_field(body, "text", required=True)
    )
    return web.json_response({"ok": True}, status=201)


@routes.get("/api/incidents/{id}/scripts")
@requires(Role.viewer)
async def list_scripts(request: web.Request) -> web.Response:
    incident = await request.app[SERVICES].store.get_incident(request.match_info["id"])
    return web.json_response({"scripts": [v.model_dump(mode="json") for v in incident.scripts]})


@routes.post("/api/incidents/{id}/scripts")
@requires(Role.leader)
async def new_script(request: web.Request) -> web.Response:
    """A new version of the wording from new parameters and/or the leader's own texts
    (`sms`, `email_subject`, `email_text`, `email_html`). Sent at once where the
    playbook's approval is `auto`; otherwise it waits for approve."""
    services = request.app[SERVICES]
    body = await json_body(request)
    params = body.get("params", {})
    texts: dict[str, str] = {k: body[k] for k in ("sms", "email_subject", "email_text", "email_html") if k in body}
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in [*params.values(), *texts.values()]):
        return error_response(400, "invalid_params", "'params' must map names to strings, and texts be strings")
    by = actor(request, body)
    incident_id = request.match_info["id"]
    version, sent = await services.pipeline.draft_and_send(incident_id, ScriptKind.script, by, params,
                                                             texts or None)
    stored = (await services.store.get_incident(incident_id)).script(version.version)
    assert stored is not None
    return web.json_response(stored.model_dump(mode="json") | {"deliveries": sent}, status=201)


@routes.post("/api/incidents/{id}/scripts/{version}/approve")
@requires(Role.leader)
async def approve_script(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await json_body(request)
    try:
        version = int(request.match_info["version"])
    except ValueError:
        return error_response(400, "bad_request", "the version must be a number")
    sent = await services.pipeline.approve(request.match_info["id"], version,
                                            actor(request, body))
    return web.json_response({"version": version, "deliveries": sent})


@routes.post("/api/incidents/{id}/remind")
@requires(Role.leader)
async def remind(request: web.Request) -> web.Response:
    """Remind now everyone the wording in force reached who has not acknowledged it
    (Pipeline.remind_now); 409 when there is nothing to remind of."""
    body = await json_body(request)
    version, queued = await request.app[SERVICES].pipeline.remind_now(request.match_info["id"], actor(request, body))
    return web.json_response({"version": version, "messages": queued})


@routes.get("/api/incidents/{id}/deliveries")
@requires(Role.viewer)
async def deliveries(request: web.Request) -> web.Response:
    """Progress of the fan-out: counts per version, channel and status, acks per
    version, and who has not acknowledged the wording in force."""
    services = request.app[SERVICES]
    incident = await services.store.get_incident(request.match_info["id"])
    return web.json_response(await delivery_board(services.store, incident))


async def delivery_board(store: Any, incident: Incident) -> dict[str, Any]:
    items = await store.deliveries(incident.id)
    acks = await store.acks(incident.id)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for d in items:
        per = counts.setdefault(str(d.key.version), {}).setdefault(d.key.channel, {})
        per[d.status.value] = per.get(d.status.value, 0) + 1
    acked: dict[str, set[str]] = {}
    for a in acks:
        if a.version is not None:
            acked.setdefault(str(a.version), set()).add(a.person_id)
    current = incident.current_script
    waiting: list[str] = []
    if current is not None:
        reached = {d.key.person_id for d in items if d.key.version == current.version}
        waiting = sorted(reached - acked.get(str(current.version), set()))
    return {
        "counts": counts,
        "acks": {v: len(people) for v, people in acked.items()},
        "current_version": current.version if current else None,
        "not_acknowledged": waiting,
    }
