"""The bodies network alarms arrive in, read into Alarms (decisions.py):

- Alertmanager's webhook, payload version "4"
  (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config): a group
  of alerts, each with status firing|resolved, labels, annotations, startsAt, endsAt,
  generatorURL and fingerprint (the dedup key; computed from the labels if absent).
- PagerDuty's Events API v2 (the body of https://events.pagerduty.com/v2/enqueue):
  routing_key, event_action trigger|acknowledge|resolve, dedup_key, and for a trigger a
  payload with summary, source, severity (and timestamp, component, group, class,
  custom_details). Its labels for alerts.yaml: source, severity, component, group, class,
  and every scalar of custom_details.

A body that does not fit raises PayloadInvalid listing every field at fault, before
anything of it is acted on."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .decisions import Alarm, AlarmAction
from ..config.yamlsource import format_loc
from ..errors import BodyError, PayloadInvalid
from ..intake import holds_lone_surrogate, read_json

MAX_KEY = 255  # PagerDuty's limit on dedup_key; fingerprints are 16 hex digits
MAX_ALERTS = 1000


class _Lax(BaseModel):
    # Senders add fields over the versions (Grafana's silenceURL, values...): kept out, not refused.
    model_config = ConfigDict(extra="ignore")


class AmAlert(_Lax):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str | None = Field(default=None, min_length=1, max_length=MAX_KEY)


class AmWebhook(_Lax):
    version: Literal["4"]
    groupKey: str = ""
    status: Literal["firing", "resolved"] | None = None
    receiver: str = ""
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str = ""
    truncatedAlerts: int = 0
    alerts: list[AmAlert] = Field(max_length=MAX_ALERTS)


class PdPayload(_Lax):
    summary: str = Field(min_length=1, max_length=1024)
    source: str = Field(min_length=1, max_length=255)
    severity: Literal["critical", "error", "warning", "info"]
    timestamp: datetime | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(default=None, alias="class")
    custom_details: Any = None


class PdEvent(_Lax):
    routing_key: str
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY)
    payload: PdPayload | None = None


def read_body(body: bytes) -> Any:
    """The JSON of a body; PayloadInvalid if it is not JSON this service reads."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadInvalid(["the body is not UTF-8 text"]) from None
    if not text.strip():
        raise PayloadInvalid(["the body is empty"])
    try:
        value = read_json(text)
    except BodyError as exc:
        raise PayloadInvalid([str(exc)]) from None
    if holds_lone_surrogate(text, value):
        raise PayloadInvalid(["a string holds half of a surrogate pair (\\ud800-\\udfff alone): not a character"])
    if not isinstance(value, dict):
        raise PayloadInvalid(["expected a JSON object"])
    return value


def _validated(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PayloadInvalid([_problem(err) for err in exc.errors()]) from None


def _problem(err: Any) -> str:
    loc = [part for part in err["loc"] if part not in ("function-after",)]
    where = format_loc(["class" if part == "class_" else part for part in loc])
    message = str(err["msg"])
    if err["type"] == "missing":
        message = "missing required field"
    return f"{where}: {message}" if where else message


def alertmanager_alarms(data: Any) -> list[Alarm]:
    """Alertmanager's webhook body (already JSON) as alarms, one per alert."""
    hook: AmWebhook = _validated(AmWebhook, data)
    alarms = []
    for alert in hook.alerts:
        labels = {**hook.commonLabels, **alert.labels}
        annotations = {**hook.commonAnnotations, **alert.annotations}
        alarms.append(Alarm(
            source="alertmanager", key=alert.fingerprint or fingerprint(labels),
            action=AlarmAction(alert.status), name=labels.get("alertname", ""), labels=labels,
            annotations=annotations, summary=annotations.get("summary", ""), started_at=alert.startsAt))
    return alarms


def fingerprint(labels: dict[str, str]) -> str:
    """A stable key for an alert sent without its fingerprint: a hash of its label set."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pagerduty_alarm(data: Any) -> Alarm:
    """PagerDuty's event body (already JSON, its routing key checked) as an alarm. A trigger
    without a dedup_key gets a new one (as PagerDuty does); acknowledge and resolve need one."""
    event: PdEvent = _validated(PdEvent, data)
    if event.event_action == "trigger" and event.payload is None:
        raise PayloadInvalid(["payload: missing required field (a trigger needs summary, source and severity)"])
    if event.event_action != "trigger" and event.dedup_key is None:
        raise PayloadInvalid([f"dedup_key: missing required field (an {event.event_action} names the alert)"])
    key = event.dedup_key or uuid.uuid4().hex
    action = {"trigger": AlarmAction.firing, "resolve": AlarmAction.resolved,
              "acknowledge": AlarmAction.acknowledged}[event.event_action]
    payload = event.payload
    if payload is None:
        return Alarm(source="pagerduty", key=key, action=action, name="", labels={})
    labels = {"source": payload.source, "severity": payload.severity}
    for name, value in (("component", payload.component), ("group", payload.group), ("class", payload.class_)):
        if value is not None:
            labels[name] = value
    if isinstance(payload.custom_details, dict):
        for name, value in payload.custom_details.items():
            if isinstance(value, (str, int, float, bool)) and name not in labels:
                labels[str(name)] = str(value)
    return Alarm(
        source="pagerduty", key=key, action=action, name=payload.class_ or payload.summary[:80], labels=labels,
        annotations={"summary": payload.summary}, summary=payload.summary, started_at=payload.timestamp)
