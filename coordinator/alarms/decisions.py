"""Network alarms, decided: what an alarm is once its payload is read (payloads.py),
which rule of alerts.yaml it falls under and what that rule makes of it (playbook,
region, parameters), and how its stored state moves when it fires, clears or is
acknowledged. Pure: data and `now` in, values out; intake.py carries it out.

An alarm is known by its source and dedup key (Alertmanager's fingerprint, PagerDuty's
dedup_key). Its state is one episode at a time: it fires (attaching to an incident
once, however often the firing repeats), then clears; a firing after it cleared is a
new episode (as PagerDuty opens a new alert for a resolved dedup_key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..config.alerts import AlarmRules, AlertRule, ParamFrom

# Labels shown on the timeline and in the answer: at most this many characters.
LABELS_SHOWN = 300


class AlarmAction(StrEnum):
    firing = "firing"
    resolved = "resolved"
    acknowledged = "acknowledged"


class Outcome(StrEnum):
    """What became of one alarm (the answer lists it; the metric counts it)."""

    opened = "opened"  # it opened an incident
    attached = "attached"  # it joined the incident open on its key
    repeat = "repeat"  # its episode was attached already: nothing new
    unmapped = "unmapped"  # no rule of alerts.yaml matches it
    failed = "failed"  # a rule matches but cannot be carried out (region, parameters)
    cleared = "cleared"  # it cleared; its incident stays open
    resolved = "resolved"  # it cleared, and with it the incident was resolved
    not_firing = "not_firing"  # a clear or acknowledgement of an alarm not firing here
    acknowledged = "acknowledged"


@dataclass(frozen=True)
class Alarm:
    """One alarm as a source reported it."""

    source: str  # "alertmanager" | "pagerduty"
    key: str  # the dedup key
    action: AlarmAction
    name: str
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    started_at: datetime | None = None


@dataclass(frozen=True)
class Routed:
    """What a rule makes of an alarm."""

    rule: int
    playbook: str
    region: str
    params: dict[str, str]
    severity: str | None
    resolve_when_cleared: bool


@dataclass(frozen=True)
class Unrouted:
    outcome: Outcome  # unmapped or failed
    reason: str


class AlarmState(BaseModel):
    """The stored state of one alarm (one per source and dedup key)."""

    model_config = ConfigDict(frozen=True)

    source: str
    key: str
    revision: int = 1
    episode: int = 1
    firing: bool = True
    name: str = ""
    labels: str = ""
    incident_id: str | None = None
    resolve_when_cleared: bool = False
    acknowledged: bool = False
    fired_at: datetime
    cleared_at: datetime | None = None


def labels_text(labels: dict[str, str]) -> str:
    """`a=1, b=2`, sorted, cut to LABELS_SHOWN characters."""
    text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return text if len(text) <= LABELS_SHOWN else text[: LABELS_SHOWN - 1] + "…"


def route(rules: AlarmRules, alarm: Alarm) -> Routed | Unrouted:
    """The first rule matching the alarm's labels, carried out: its region (fixed, or from
    a label through the rule's map) and parameters (templates, or a label or annotation)."""
    found = rules.first(alarm.source, alarm.labels)
    if found is None:
        return Unrouted(Outcome.unmapped, "no rule in alerts.yaml matches its labels")
    index, rule = found
    region = _region(rule, alarm.labels)
    if region is None:
        assert not isinstance(rule.region, str)
        return Unrouted(Outcome.failed, f"alerts.yaml rule {index + 1}: label '{rule.region.label}' "
                                        f"gives no known region and the rule has no default")
    context: dict[str, Any] = {"labels": alarm.labels, "annotations": alarm.annotations, "summary": alarm.summary,
                               "name": alarm.name, "source": alarm.source}
    params: dict[str, str] = {}
    for name, spec in rule.params.items():
        if isinstance(spec, ParamFrom):
            value = alarm.labels.get(spec.label, "") if spec.label else alarm.annotations.get(spec.annotation or "", "")
        elif (index, name) in rules.templates:
            try:
                value = rules.templates[index, name].render(context)
            except Exception as exc:  # an admin's template failing on this alarm's values (x / 0, a sandbox refusal)
                return Unrouted(Outcome.failed, f"alerts.yaml rule {index + 1}: parameter {name}: the template "
                                                f"failed: {type(exc).__name__}: {exc}")
        else:
            value = spec
        if value.strip():
            params[name] = value.strip()  # an empty one falls back to the playbook's default
    return Routed(index, rule.playbook, region, params, rule.severity, rule.resolve_when_cleared)


def _region(rule: AlertRule, labels: dict[str, str]) -> str | None:
    if isinstance(rule.region, str):
        return rule.region
    value = labels.get(rule.region.label)
    if value is not None:
        if not rule.region.map:
            return value
        if value in rule.region.map:
            return rule.region.map[value]
    return rule.region.default


# --- the state of one alarm ------------------------------------------------------------------


def fires(state: AlarmState | None) -> bool:
    """Whether this firing is news: the first, a new episode after it cleared, or one whose
    earlier firing never reached an incident. A repeat of an attached episode is not."""
    return state is None or not state.firing or state.incident_id is None


def attached(state: AlarmState | None, alarm: Alarm, routed: Routed, incident_id: str, now: datetime) -> AlarmState:
    """The state once the firing has joined `incident_id` (stored with compare-and-set on
    the revision: of two instances attaching the same firing, one wins)."""
    if state is not None and state.firing:  # the episode's earlier firing never reached an incident
        return state.model_copy(update={"revision": state.revision + 1, "incident_id": incident_id,
                                        "resolve_when_cleared": routed.resolve_when_cleared})
    return AlarmState(
        source=alarm.source, key=alarm.key, revision=state.revision + 1 if state else 1,
        episode=state.episode + 1 if state else 1, firing=True, name=alarm.name,
        labels=labels_text(alarm.labels), incident_id=incident_id, resolve_when_cleared=routed.resolve_when_cleared,
        fired_at=now,
    )


def cleared(state: AlarmState | None, now: datetime) -> AlarmState | None:
    """The state once the alarm cleared; None when it was not firing (nothing to record)."""
    if state is None or not state.firing:
        return None
    return state.model_copy(update={"revision": state.revision + 1, "firing": False, "cleared_at": now})


def acknowledged(state: AlarmState | None) -> AlarmState | None:
    """The state once the source says someone is on it; None if not firing or said before."""
    if state is None or not state.firing or state.acknowledged:
        return None
    return state.model_copy(update={"revision": state.revision + 1, "acknowledged": True})


def resolves_incident(state: AlarmState, others: list[AlarmState], incident_open: bool) -> bool:
    """A cleared alarm resolves its incident when its rule says so, the incident is still
    open, and every alarm attached to that incident has cleared too."""
    if not state.resolve_when_cleared or state.incident_id is None or not incident_open:
        return False
    return not any(o.firing and o.incident_id == state.incident_id for o in others
                   if (o.source, o.key) != (state.source, state.key))


def timeline_data(alarm: Alarm, state: AlarmState) -> dict[str, Any]:
    """What the incident's timeline records of an alarm (flat, for the console's line)."""
    data: dict[str, Any] = {"source": alarm.source, "name": alarm.name, "dedup_key": alarm.key,
                            "labels": labels_text(alarm.labels) if alarm.labels else state.labels}
    if alarm.summary:
        data["summary"] = alarm.summary[:LABELS_SHOWN]
    if state.episode > 1:
        data["episode"] = state.episode
    return data
