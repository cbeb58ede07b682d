"""The JSON API. Handlers parse, call into the domain, and answer; nothing else."""

from __future__ import annotations

import json
import logging
from typing import Any, Sequence, TypeVar

from aiohttp import web

from ..errors import StoreError
from ..errors import BodyError
from ..intake import parse_body
from ..store.records import MEDIA
from ..config.users import Role
from ..detection.streams import Learning
from .auth import public, requires
from .i18n import translator
from .pages.overview import learning_text
from .errors import error_response
from .state import SERVICES

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


E = TypeVar("E", bound=web.HTTPError)


def api_error(kind: type[E], code: str, message: str, details: Sequence[Any] = ()) -> E:
    """An HTTP error in the error shape, to raise from deep in a handler (errors.json_errors
    passes a JSON HTTP error through as it is). The message goes in the body, never in the
    status line's reason, where a newline from the client would make aiohttp raise."""
    error = {"error": {"code": code, "message": message, "details": list(details)}}
    return kind(text=json.dumps(error, ensure_ascii=False), content_type="application/json")


def bad_request(code: str, message: str, details: Sequence[Any] = ()) -> web.HTTPBadRequest:
    return api_error(web.HTTPBadRequest, code, message, details)


@routes.get("/healthz")
@public
async def healthz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        await services.store.ping()
    except StoreError as exc:
        return web.json_response({"status": "unavailable", "store": str(exc)}, status=503)
    missing = services.missing_channels()
    channels = {m: "ok" if m in services.media else "missing" for m in MEDIA}
    # Degraded, not down (200): the instance serves, but some messages cannot go out.
    return web.json_response({"status": "degraded" if missing else "ok", "store": "ok",
                              "playbooks": len(services.catalog.playbooks), "channels": channels,
                              "missing_channels": missing})


@routes.get("/livez")
@public
async def livez(request: web.Request) -> web.Response:
    """The process is up and answering; nothing else is looked at (a restart would not
    fix a store or a channel that is down)."""
    return web.json_response({"status": "alive"})


@routes.get("/readyz")
@public
async def readyz(request: web.Request) -> web.Response:
    """Ready for traffic: the store answers, a config is loaded, and every channel a
    playbook needs is configured. 503 otherwise, with what is wrong."""
    services = request.app[SERVICES]
    problems: list[str] = []
    try:
        await services.store.ping()
    except StoreError as exc:
        problems.append(f"store: {exc}")
    if not services.catalog.playbooks:
        problems.append("config: no playbook loaded")
    for playbook, missing in services.missing_channels().items():
        problems.append(f"playbook {playbook} needs {' and '.join(missing)}, which is not configured")
    return web.json_response({"status": "not_ready" if problems else "ready", "problems": problems},
                             status=503 if problems else 200)


@routes.post("/api/complaints")
@requires(Role.intake)
async def post_complaints(request: web.Request) -> web.Response:
    """One complaint object, a JSON array of them, or NDJSON. 200 when at least one item
    was accepted or already known; 400 when every item was refused (the per-item reasons
    are in both cases under `errors`)."""
    services = request.app[SERVICES]
    body = await request.read()
    try:
        items = parse_body(body, request.content_type, services.settings.max_items)
    except BodyError as exc:
        status = 413 if exc.code == "too_many_items" else 400
        return error_response(status, exc.code, str(exc))
    result = await services.pipeline.receive(items)
    log.info(
        "complaints: %d accepted, %d duplicate, %d rejected",
        result.accepted, result.duplicate, len(result.rejected),
    )
    answer = result.as_json()
    if result.accepted or result.duplicate:
        return web.json_response(answer)
    details = answer.pop("errors")
    return error_response(
        400, "invalid_complaints", f"all {len(details)} complaint(s) were rejected", details, **answer, errors=details
    )


def detection_state(learning: Learning, bucket_seconds: float) -> dict[str, Any]:
    """What detection can do on a stream yet: `learning` (its first day: unmistakable
    surges only, judged against what it was seeded from) or `ready`."""
    prior = learning.prior
    return {
        "state": "learning" if learning.young else "ready",
        "learned_hours": round(learning.learned_hours, 2),
        "warmup_hours": round(learning.warmup_hours, 2),
        "seeded_from": None if prior is None else {
            "source": prior.source, "streams": list(prior.streams),
            "per_hour": round(prior.per_bucket * 3600.0 / bucket_seconds, 2),
        },
        "summary": learning_text(learning, translator("en"), str, bucket_seconds),
    }


@routes.get("/api/streams")
@requires(Role.viewer)
async def streams(request: web.Request) -> web.Response:
    """Every stream: current and last bucket counts, baseline, score, open surge, the
    count and share of repeat complainants over the last 24 hours, and what detection
    can do on it yet."""
    services = request.app[SERVICES]
    out = []
    for name in await services.store.stream_names():
        status = await services.monitor.status(name)
        out.append({
            "stream": status.stream,
            "bucket_minutes": services.settings.bucket_minutes,
            "current_count": status.current_count,
            "last_count": status.last_count,
            "baseline": round(status.expected, 3),
            "score": round(status.score, 4),
            "surge": status.surge.model_dump(mode="json") if status.surge else None,
            "complaints_24h": status.total_24h,
            "repeats_24h": status.repeats_24h,
            "repeat_share": round(status.repeat_share, 4),
            "detection": detection_state(status.learning, services.settings.bucket_seconds),
        })
    return web.json_response({"streams": out})
