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
    """The gauges of global state, from the store: who has not acknowledged is counted
    there (`unacknowledged`), not by reading every open incident's deliveries and acks."""
    store = services.store
    incidents = await store.list_incidents()
    metrics.INCIDENTS.clear()
    metrics.UNACKED.clear()
    in_force: dict[str, int] = {}
    for incident in incidents:
        metrics.INCIDENTS.labels(incident.playbook, incident.status.value).inc()
        current = incident.current_script
        if incident.status != IncidentStatus.closed and current is not None:
            in_force[incident.id] = current.version
    for incident_id, count in (await store.unacknowledged(in_force)).items():
        metrics.UNACKED.labels(incident_id).set(count)
    metrics.OUTBOX.set(await store.outbox_size())
    oldest = await store.oldest_claim()
    metrics.OLDEST_CLAIM.set(0 if oldest is None else max(0.0, (services.clock.now() - oldest).total_seconds()))
    streams, learning, alarming = services.monitor.census()
    metrics.STREAMS.set(streams)
    metrics.STREAMS_LEARNING.set(learning)
    metrics.STREAMS_ALARMING.set(alarming)
    metrics.WEBHOOK_QUEUE.clear()
    for subscriber, depth in (await store.webhook_queue_depths()).items():
        metrics.WEBHOOK_QUEUE.labels(subscriber).set(depth)


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
