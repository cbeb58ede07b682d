"""The OpenAPI entries of the network alarm receivers (web/alarms.py), merged into the
document by web/openapi.py: the bodies they read and every answer they give."""

from __future__ import annotations

from ..alarms.decisions import Outcome
from .openapi_parts import ERROR, STR, Schema, json_answer, obj, op, ref

_STRINGS: Schema = {"type": "object", "additionalProperties": STR}
_TIME: Schema = {"type": "string", "format": "date-time"}

AM_ALERT = obj({
    "status": {"enum": ["firing", "resolved"]},
    "labels": _STRINGS,
    "annotations": _STRINGS,
    "startsAt": _TIME,
    "endsAt": _TIME,
    "generatorURL": STR,
    "fingerprint": {"type": "string", "minLength": 1, "maxLength": 255,
                    "description": "the dedup key; computed from the labels when absent"},
}, ("status", "labels"), extra=True)

AM_WEBHOOK = obj({
    "version": {"const": "4"},
    "groupKey": STR,
    "truncatedAlerts": {"type": "integer"},
    "status": {"enum": ["firing", "resolved"]},
    "receiver": STR,
    "groupLabels": _STRINGS,
    "commonLabels": _STRINGS,
    "commonAnnotations": _STRINGS,
    "externalURL": STR,
    "alerts": {"type": "array", "items": ref("AlertmanagerAlert"), "maxItems": 1000},
}, ("version", "alerts"), extra=True)

HANDLED = obj({
    "dedup_key": STR,
    "outcome": {"enum": [o.value for o in Outcome],
                "description": "opened / attached (an incident), repeat (attached before), unmapped (no rule in "
                               "alerts.yaml), failed (a rule matched but gave no region or parameters: see "
                               "reason), cleared, resolved (it cleared and so did the incident), not_firing, "
                               "acknowledged"},
    "incident": {"type": ["string", "null"]},
    "reason": STR,
}, ("dedup_key", "outcome", "incident"))

PD_EVENT = obj({
    "routing_key": {"type": "string", "description": "COORDINATOR_PAGERDUTY_ROUTING_KEY"},
    "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
    "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255,
                  "description": "required for acknowledge and resolve; a trigger without one gets a new one"},
    "payload": obj({
        "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
        "source": {"type": "string", "minLength": 1, "maxLength": 255},
        "severity": {"enum": ["critical", "error", "warning", "info"]},
        "timestamp": _TIME,
        "component": STR,
        "group": STR,
        "class": STR,
        "custom_details": {"description": "an object's scalar entries become labels for alerts.yaml"},
    }, ("summary", "source", "severity"), extra=True),
}, ("routing_key", "event_action"), extra=True)

# PagerDuty's own answer shapes.
PD_ANSWER = obj({"status": STR, "message": STR, "errors": {"type": "array", "items": STR}},
                ("status", "message", "errors"))
PD_ACCEPTED = obj({"status": {"const": "success"}, "message": STR, "dedup_key": STR},
                  ("status", "message", "dedup_key"))


def alarm_schemas() -> dict[str, Schema]:
    return {"AlertmanagerAlert": AM_ALERT, "AlertmanagerWebhook": AM_WEBHOOK, "PagerDutyEvent": PD_EVENT}


def alarm_paths() -> dict[str, dict[str, Schema]]:
    alertmanager = op(
        "Alertmanager webhook receiver (payload version 4): network alarms in", None,
        {200: json_answer(obj({"status": {"const": "success"}, "alerts": {"type": "array", "items": HANDLED}},
                              ("status", "alerts")), "every alert handled; what became of each"),
         404: json_answer(ERROR, "`not_configured`: COORDINATOR_ALERTMANAGER_TOKEN is not set")},
        body={"required": True, "content": {"application/json": {"schema": ref("AlertmanagerWebhook")}}},
        errors=(401,),
        description="Authorised by `Authorization: Bearer COORDINATOR_ALERTMANAGER_TOKEN` (Alertmanager's "
                    "`http_config.authorization.credentials`), compared in constant time; no session or user "
                    "token. Each alert is routed by alerts.yaml: a firing opens the rule's incident or joins "
                    "the one open on its key, once per fingerprint and episode; a resolved one is recorded and "
                    "may resolve the incident. Alerts no rule matches are answered `unmapped` and counted. "
                    "A malformed body is 400 `invalid_payload` naming each field (`details`) and nothing of "
                    "it is acted on.")
    alertmanager["tags"] = ["signed"]
    pagerduty = op(
        "PagerDuty Events API v2 endpoint (the body of events.pagerduty.com/v2/enqueue)", None,
        {202: json_answer(PD_ACCEPTED, "`Event processed`, with the dedup_key (a new one for a trigger sent "
                                       "without)")},
        body={"required": True, "content": {"application/json": {"schema": ref("PagerDutyEvent")}}},
        description="Answered as PagerDuty answers. The routing_key must be COORDINATOR_PAGERDUTY_ROUTING_KEY "
                    "(constant-time comparison). Labels for alerts.yaml: payload.source, severity, component, "
                    "group, class and the scalar entries of custom_details.")
    pagerduty["tags"] = ["signed"]
    pagerduty["responses"]["400"] = json_answer(
        {"oneOf": [PD_ANSWER, ERROR]}, "`invalid event`: `errors` names each field at fault (a body the "
                                       "server cannot read at all: the error shape)")
    pagerduty["responses"]["401"] = json_answer(PD_ANSWER, "the routing_key is missing or wrong")
    pagerduty["responses"]["404"] = json_answer(PD_ANSWER, "COORDINATOR_PAGERDUTY_ROUTING_KEY is not set")
    return {"/hooks/alertmanager": {"post": alertmanager}, "/hooks/pagerduty/v2/enqueue": {"post": pagerduty}}
