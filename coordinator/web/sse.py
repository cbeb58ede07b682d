"""Live pages by server-sent events. The server polls the store (every second or two)
and sends a small JSON summary whenever its fingerprint changes; the page then fetches
itself again and swaps its live parts (static/console.js). Polling the store keeps this
right with several instances on one Redis, where no in-process signal would see what
another instance did."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from ..errors import IncidentNotFound, StoreError
from ..models import ALL_REGIONS, DRILL_PREFIX, DrillRunStatus, bucket_start, utc
from .auth import still_allowed
from .guard import limits_of, write_or_drop
from .state import Services

log = logging.getLogger(__name__)

Summary = dict[str, Any]
STOP = web.AppKey("console_sse_stop", asyncio.Event)
KEEPALIVE_SECONDS = 15.0  # a comment line now and then, so proxies keep the stream open


def setup(app: web.Application) -> None:
    """Open streams end when the app shuts down, rather than holding it up."""
    app[STOP] = asyncio.Event()

    async def stop(app: web.Application) -> None:
        app[STOP].set()

    app.on_shutdown.append(stop)


def _fingerprint(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


async def overview_summary(services: Services) -> Summary:
    """Open incidents (each with its revision) and the complaints in the filling bucket
    of every category-wide stream: cheap to read, and it moves whenever the overview
    would show something new."""
    store = services.store
    now = services.clock.now()
    width = services.settings.bucket_seconds
    current = bucket_start(now, width)
    incidents = await store.list_incidents(open_only=True)
    wide = [s for s in await store.stream_names() if s.endswith("/" + ALL_REGIONS) and not s.startswith(DRILL_PREFIX)]
    filling = 0
    for stream in wide:
        filling += sum((await store.bucket_counts(stream, utc(current), utc(current + width))).values())
    surges = sum(1 for i in incidents if i.surge is not None)
    # Running drills move on as they feed complaints (the drills page follows this stream).
    drills = [(r.id, r.revision) for r in await store.drill_runs() if r.status == DrillRunStatus.running]
    parts = [[(i.id, i.revision) for i in incidents], current, filling, drills]
    return {"fingerprint": _fingerprint(parts), "open_incidents": len(incidents), "with_surge": surges,
            "complaints_in_bucket": filling}


async def incident_summary(services: Services, incident_id: str) -> Summary:
    """The incident's revision, its timeline's length (every ack, reminder and step
    adds to it), the acks, the deliveries by status, and its drill run's progress."""
    store = services.store
    incident = await store.get_incident(incident_id)
    timeline = await store.timeline(incident_id)
    acks = await store.acks(incident_id)
    statuses: dict[str, int] = {}
    for d in await store.deliveries(incident_id):
        statuses[d.status.value] = statuses.get(d.status.value, 0) + 1
    roles_acked = sum(1 for r in incident.roles if r.acked_at is not None)
    run = await store.get_drill_run(incident.drill_run) if incident.drill_run else None
    parts = [incident.revision, len(timeline), len(acks), sorted(statuses.items()), run.revision if run else None]
    return {"fingerprint": _fingerprint(parts), "status": incident.status.value, "acks": len(acks),
            "roles_acked": roles_acked, "roles": len(incident.roles), "events": len(timeline),
            "deliveries": statuses}


async def stream(request: web.Request, summary: Callable[[], Awaitable[Summary]], every: float) -> web.StreamResponse:
    """Send `summary()` as an `update` event now and whenever its fingerprint changes,
    polling every `every` seconds, until the client leaves or the app stops. A store
    that does not answer is reported as a `trouble` event, and polling goes on."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    stop = request.app[STOP]
    timeout = limits_of(request).write_timeout  # a page that never reads is dropped
    last: str | None = None
    quiet = 0.0
    try:
        await write_or_drop(response, b"retry: 3000\n\n", timeout)
        while not stop.is_set():
            if not await still_allowed(request):
                break  # signed out (elsewhere too) or its token revoked: the page stops updating
            try:
                data = await summary()
            except StoreError as exc:
                log.warning("live updates: store unavailable: %s", exc)
                data = {"fingerprint": "trouble", "trouble": "store unavailable"}
            except IncidentNotFound:
                break
            if data["fingerprint"] != last:
                last = data["fingerprint"]
                kind = "trouble" if "trouble" in data else "update"
                await write_or_drop(response, f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode(), timeout)
                quiet = 0.0
            elif quiet >= KEEPALIVE_SECONDS:
                await write_or_drop(response, b": keepalive\n\n", timeout)
                quiet = 0.0
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                quiet += every
    except ConnectionResetError:
        pass  # the page was closed or navigated away, or it stopped reading (StalledClient)
    return response
