"""GET /metrics: the Prometheus exposition of coordinator/metrics.py's registry, through
prometheus-client's own aiohttp handler (content negotiation, OpenMetrics, gzip). Open
unless COORDINATOR_METRICS_TOKEN is set; then only `Authorization: Bearer TOKEN`.
The gauges of global state are read from the store first, so each scrape is current."""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from .. import metrics
from ..models import IncidentStatus
from .errors import error_response
from .auth import public
from .state import SERVICES, Services

routes = web.RouteTableDef()
_EXPOSE = make_aiohttp_handler(metrics.REGISTRY)


async def refresh(services: Services) -> None:
    store = services.store
    incidents = await store.list_incidents()
    metrics.INCIDENTS.clear()
    metrics.UNACKED.clear()
    for incident in incidents:
        metrics.INCIDENTS.labels(incident.playbook, incident.status.value).inc()
        current = incident.current_script
        if incident.status == IncidentStatus.closed or current is None:
            continue
        reached = {d.key.person_id for d in await store.deliveries(incident.id)
                   if d.key.is_script and d.key.version == current.version}
        acked = {a.person_id for a in await store.acks(incident.id) if a.version == current.version}
        metrics.UNACKED.labels(incident.id).set(len(reached - acked))
    metrics.OUTBOX.set(await store.outbox_size())


@routes.get("/metrics")
@public
async def prometheus_metrics(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    token = services.settings.metrics_token
    if token is not None and not hmac.compare_digest(request.headers.get("Authorization", "").encode(),
                                                     f"Bearer {token}".encode()):
        return error_response(401, "unauthorized", "send Authorization: Bearer COORDINATOR_METRICS_TOKEN")
    await refresh(services)
    return await _EXPOSE(request)
