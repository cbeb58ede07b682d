"""Network alarms in, carried out: each alarm routed by alerts.yaml (alarms.route), then
its firing opens the rule's incident or attaches to the one open on its key (through
Pipeline.trigger: the key of the playbook's first category in the region, the key a
complaint surge there opens or joins too), its clearing is recorded and may resolve
the incident, a PagerDuty acknowledgement is recorded. Each is written to the
incident's timeline once: the alarm's state is saved by revision in the store, so a
repeat (or the same firing at two instances) attaches once, across restarts.

Alarms are never drills: a drill's incident lives on its own `drill:` key and is never
joined by an alarm, nor an alarm's incident by a drill."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol

from . import decisions as decide
from .. import metrics
from .decisions import Alarm, AlarmAction, AlarmState, Outcome, Unrouted
from ..clock import Clock
from ..config.alerts import AlarmRules
from ..errors import IncidentNotFound, InvalidAction, ParamsInvalid, PlaybookNotFound
from ..logs import log_ids
from ..models import TimelineEvent
from ..pipeline import Pipeline
from ..store import IncidentStore
from ..store.protocols.alarms import AlarmStore

log = logging.getLogger(__name__)

# Compare-and-set rounds before an alarm's save gives way to the writer that got there first.
ROUNDS = 3


class _Store(AlarmStore, IncidentStore, Protocol):
    """What alarm intake uses of the store."""


@dataclass(frozen=True)
class Handled:
    """What became of one alarm: for the answer and the metric."""

    key: str
    outcome: Outcome
    incident_id: str | None = None
    reason: str = ""

    def as_json(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {"dedup_key": self.key, "outcome": self.outcome.value,
                                      "incident": self.incident_id}
        if self.reason:
            out["reason"] = self.reason
        return out


class AlarmIntake:
    def __init__(self, *, store: _Store, pipeline: Pipeline, rules: Callable[[], AlarmRules], clock: Clock) -> None:
        """`rules`: the alerts.yaml in use (the catalog's, swapped by a reload)."""
        self.store = store
        self.pipeline = pipeline
        self.rules = rules
        self.clock = clock

    async def handle(self, alarm: Alarm) -> Handled:
        if alarm.action == AlarmAction.firing:
            handled = await self._firing(alarm)
        elif alarm.action == AlarmAction.resolved:
            handled = await self._resolved(alarm)
        else:
            handled = await self._acknowledged(alarm)
        metrics.ALARMS.labels(alarm.source, handled.outcome.value).inc()
        return handled

    async def _firing(self, alarm: Alarm) -> Handled:
        routed = decide.route(self.rules(), alarm)
        if isinstance(routed, Unrouted):
            level = logging.INFO if routed.outcome == Outcome.unmapped else logging.ERROR
            log.log(level, "%s alarm %s (%s) opens nothing: %s", alarm.source, alarm.name or "-", alarm.key,
                    routed.reason)
            return Handled(alarm.key, routed.outcome, reason=routed.reason)
        for _ in range(ROUNDS):
            state = await self.store.get_alarm(alarm.source, alarm.key)
            if not decide.fires(state):
                assert state is not None
                return Handled(alarm.key, Outcome.repeat, state.incident_id)
            try:
                opened = await self.pipeline.trigger(routed.playbook, region=routed.region, params=routed.params,
                                                     severity=routed.severity, actor=alarm.source, related=True)
            except (PlaybookNotFound, InvalidAction, ParamsInvalid) as exc:
                log.error("%s alarm %s (%s) opens no incident: %s", alarm.source, alarm.name or "-", alarm.key, exc)
                return Handled(alarm.key, Outcome.failed, reason=str(exc))
            incident = opened.incident
            new = decide.attached(state, alarm, routed, incident.id, self.clock.now())
            if await self.store.save_alarm(new):
                await self._record(incident.id, "alarm", alarm, new)
                outcome = Outcome.opened if opened.created else Outcome.attached
                log.info("%s alarm %s (%s) %s incident %s", alarm.source, alarm.name or "-", alarm.key,
                         "opened" if opened.created else "attached to", incident.id)
                return Handled(alarm.key, outcome, incident.id)
        # Another writer kept changing it: the firing is theirs to record.
        state = await self.store.get_alarm(alarm.source, alarm.key)
        return Handled(alarm.key, Outcome.repeat, state.incident_id if state else None)

    async def _resolved(self, alarm: Alarm) -> Handled:
        for _ in range(ROUNDS):
            state = await self.store.get_alarm(alarm.source, alarm.key)
            new = decide.cleared(state, self.clock.now())
            if new is None:
                return Handled(alarm.key, Outcome.not_firing, state.incident_id if state else None)
            if await self.store.save_alarm(new):
                break
        else:
            return Handled(alarm.key, Outcome.not_firing)
        if new.incident_id is None:
            return Handled(alarm.key, Outcome.cleared)
        await self._record(new.incident_id, "alarm_cleared", alarm, new)
        if await self._resolve_if_all_cleared(new, alarm):
            return Handled(alarm.key, Outcome.resolved, new.incident_id)
        return Handled(alarm.key, Outcome.cleared, new.incident_id)

    async def _resolve_if_all_cleared(self, state: AlarmState, alarm: Alarm) -> bool:
        assert state.incident_id is not None
        try:
            incident = await self.store.get_incident(state.incident_id)
        except IncidentNotFound:
            return False
        others = await self.store.incident_alarms(state.incident_id)
        if not decide.resolves_incident(state, others, incident.is_open):
            return False
        try:
            with log_ids(incident_id=incident.id):
                await self.pipeline.resolve(incident.id, alarm.source, f"alarm {alarm.name or alarm.key} cleared; "
                                                                       "every alarm on the incident has cleared")
        except InvalidAction:  # resolved meanwhile (a leader, or the other instance)
            return False
        log.info("incident %s resolved: its alarms cleared", incident.id)
        return True

    async def _acknowledged(self, alarm: Alarm) -> Handled:
        for _ in range(ROUNDS):
            state = await self.store.get_alarm(alarm.source, alarm.key)
            new = decide.acknowledged(state)
            if new is None:
                return Handled(alarm.key, Outcome.not_firing if state is None or not state.firing else Outcome.repeat,
                               state.incident_id if state else None)
            if await self.store.save_alarm(new):
                if new.incident_id is not None:
                    await self._record(new.incident_id, "alarm_acknowledged", alarm, new)
                return Handled(alarm.key, Outcome.acknowledged, new.incident_id)
        return Handled(alarm.key, Outcome.repeat)

    async def _record(self, incident_id: str, kind: str, alarm: Alarm, state: AlarmState) -> None:
        await self.store.append_timeline(incident_id, TimelineEvent(
            at=self.clock.now(), kind=kind, actor=alarm.source, data=decide.timeline_data(alarm, state)))
