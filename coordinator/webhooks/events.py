"""Lifecycle events out: what an incident's timeline (and a drill run's end) tells the
systems around the service (CRM, work orders, big screens), as CloudEvents 1.0 in
structured JSON, queued per subscriber in the store for the webhook sender
(sender.py).

One table maps timeline event kinds to CloudEvents types. Every change of an incident
reaches it through IncidentUpdates (the change's events, once saved), the opening
through the pipeline and a publication through the publication's `script_sent` event.
Each event's id is derived from what it is about (the incident and the revision its
change saved, the opening, the version published, the drill run), so recording it twice
(two instances finishing one drill run) queues it once."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cloudevents.core.bindings.http import to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from .. import metrics
from ..errors import StoreError
from ..models import DrillRun, Incident, TimelineEvent
from ..store.protocols.webhooks import WebhookDelivery, WebhookStore

if TYPE_CHECKING:
    from .config.webhooks import Webhooks

log = logging.getLogger(__name__)

PREFIX = "cn.coordinator."
# (timeline kind, the status it moves to for "status" events) -> CloudEvents type.
TYPES: dict[tuple[str, str | None], str] = {
    ("opened", None): PREFIX + "incident.opened",
    ("role_acked", None): PREFIX + "role.acknowledged",
    ("status", "acknowledged"): PREFIX + "incident.acknowledged",
    ("escalated", None): PREFIX + "role.escalated",
    ("script_approved", None): PREFIX + "script.approved",
    ("script_sent", None): PREFIX + "script.published",
    ("status", "resolved"): PREFIX + "incident.resolved",
}
DRILL_FINISHED = PREFIX + "drill.finished"
EVENT_TYPES: tuple[str, ...] = (*TYPES.values(), DRILL_FINISHED)
_FORMAT = JSONFormat()


def event_type(event: TimelineEvent) -> str | None:
    """The CloudEvents type of a timeline event, or None when subscribers are not told."""
    if event.kind == "status":
        return TYPES.get(("status", str(event.data.get("status"))))
    return TYPES.get((event.kind, None))


def incident_summary(incident: Incident) -> dict[str, Any]:
    return {"id": incident.id, "playbook": incident.playbook, "title": incident.title,
            "severity": incident.severity, "category": incident.category, "region": incident.region,
            "status": incident.status.value, "drill": incident.drill, "drill_run": incident.drill_run,
            "opened_at": incident.opened_at.isoformat(), "code": incident.code}


def structured(event_id: str, kind: str, source: str, subject: str, at: datetime, data: dict[str, Any]) -> str:
    """One CloudEvent in structured JSON mode (the body sent; its Content-Type is
    application/cloudevents+json)."""
    event = CloudEvent({"id": event_id, "source": source, "type": kind, "subject": subject, "time": at,
                        "datacontenttype": "application/json"}, data)
    return to_structured(event, _FORMAT).body.decode("utf-8")


def incident_events(incident: Incident, events: Sequence[TimelineEvent], key: str,
                    source: str) -> list[tuple[str, str, str]]:
    """(id, type, body) of each of `events` subscribers are told of. `key` names the
    change within the incident (the revision it saved, "opened", "v3"): the ids are
    `<incident>.<key>.<n>`, the same whoever records them."""
    out = []
    for n, event in enumerate(events):
        kind = event_type(event)
        if kind is None:
            continue
        event_id = f"{incident.id}.{key}.{n}"
        data = {"incident": incident_summary(incident), "actor": event.actor, "details": event.data}
        out.append((event_id, kind, structured(event_id, kind, source, incident.id, event.at, data)))
    return out


def drill_event(run: DrillRun, source: str) -> tuple[str, str, str]:
    event_id = f"{run.id}.finished"
    data = {"drill_run": run.model_dump(mode="json", include={
        "id", "drill_id", "title", "how", "by", "status", "incident_id", "started_at", "ended_at", "end_reason",
        "detected", "channels"})}
    at = run.ended_at or run.started_at
    return event_id, DRILL_FINISHED, structured(event_id, DRILL_FINISHED, source, run.incident_id or run.id, at, data)


class LifecycleEvents:
    """Queues each lifecycle event for the subscribers (webhooks.yaml in the catalog in
    use) that want its type, and wakes this instance's sender."""

    def __init__(self, *, store: WebhookStore, webhooks: Callable[[], Webhooks], wake: asyncio.Event) -> None:
        self.store = store
        self.webhooks = webhooks
        self.wake = wake

    async def incident(self, incident: Incident, events: Sequence[TimelineEvent], key: str) -> int:
        """Tell subscribers of `events`, just appended to the incident's timeline."""
        if not self.webhooks().subscribers or not events:
            return 0
        return await self._queue(incident_events(incident, events, key, self.webhooks().source), events[0].at)

    async def drill_finished(self, run: DrillRun) -> int:
        if not self.webhooks().subscribers:
            return 0
        return await self._queue([drill_event(run, self.webhooks().source)], run.ended_at or run.started_at)

    async def _queue(self, events: list[tuple[str, str, str]], at: datetime) -> int:
        """Queue (id, type, body) events made `at` (their due time, and where their age
        counts from) for each subscriber wanting their type."""
        config = self.webhooks()
        queued = [WebhookDelivery(subscriber=s.id, event_id=event_id, event_type=kind, body=body, created_at=at)
                  for event_id, kind, body in events for s in config.wanting(kind)]
        if not queued:
            return 0
        try:
            added = await self.store.enqueue_webhooks(queued)
        except StoreError as exc:
            # The incident's change is saved already: it stands; the subscribers miss this one.
            metrics.WEBHOOKS.labels("", "unqueued").inc(len(queued))
            log.error("lifecycle events %s not queued for webhooks: %s", ", ".join(e[0] for e in events), exc)
            return 0
        if added:
            self.wake.set()
        return added
