"""The OpenAPI document's building blocks: the component schemas (the stored records'
generated from their pydantic models, the rest by hand), an operation with its role
and error answers, and the path and query parameters the API uses."""

from __future__ import annotations

from functools import cache
from typing import Any

from ..config.users import Role
from ..models import Channel, DrillRun, Incident, ScriptVersion, TimelineEvent
from ..reports.drill import DrillReport
from ..reports.parts import IncidentReport
from ..reports.stats import Statistics

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), extra: bool = False) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required:
        schema["required"] = list(required)
    return schema


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
BY: Schema = {"type": "string", "description": "the acting person; read only with the admin token "
                                                "(otherwise the signed-in user or the token's owner acts)"}

ERROR = obj({
    "error": obj({
        "code": {"type": "string", "examples": ["not_found", "forbidden", "invalid_params"]},
        "message": STR,
        "details": {"type": "array", "items": {}},
    }, ("code", "message", "details")),
}, ("error",), extra=True)

REJECTION = obj({"line": INT, "id": {"type": ["string", "null"]}, "field": {"type": ["string", "null"]},
                   "reason": STR}, ("line", "reason"))
INTAKE_COUNTS = {"accepted": INT, "duplicate": INT, "rejected": INT, "repeats": INT,
                  "late": {"type": "integer", "description": "accepted after their bucket was fed to surge "
                           "detection (COORDINATOR_DETECTION_GRACE_SECONDS): counted, not detected on"},
                  "errors": {"type": "array", "items": ref("Rejection")}}

COMPLAINT = obj({
    "id": {"type": "string", "minLength": 1, "maxLength": 128},
    "received_at": {"type": "string", "format": "date-time",
                    "description": "ISO-8601 with a UTC offset (2026-11-24T09:58:00+08:00); a number or a string "
                                   "of digits (Unix time) is refused"},
    "channel": {"enum": [c.value for c in Channel]},
    "category": {"type": "string", "description": "a built-in category or one from categories.yaml"},
    "region": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
    "subscriber": {"type": "string", "description": "stored only as a keyed hash"},
    "text": {"type": "string", "maxLength": 2000},
}, ("id", "received_at", "channel", "category", "region"), extra=True)

ROLE_VIEW = obj({
    "role": STR, "title": STR, "holder": {"type": ["string", "null"]}, "level": INT,
    "chain": {"type": "array", "items": STR}, "deadline": NULLABLE_TIME, "acked": BOOL,
    "acked_by": {"type": ["string", "null"]}, "acked_at": NULLABLE_TIME, "unfilled": BOOL,
    "gaps": {"type": "array", "items": STR},
}, ("role", "title", "holder", "level", "acked"))

STREAM = obj({
    "stream": STR, "bucket_minutes": INT, "current_count": INT, "last_count": INT, "baseline": {"type": "number"},
    "score": {"type": "number"}, "surge": {"oneOf": [ref("Surge"), {"type": "null"}]},
    "complaints_24h": INT, "repeats_24h": INT, "repeat_share": {"type": "number"},
    "detection": obj({"state": {"enum": ["learning", "ready"]}, "learned_hours": {"type": "number"},
                      "warmup_hours": {"type": "number"},
                      "seeded_from": {"oneOf": [obj({"source": {"enum": ["streams", "config", "default"]},
                                                     "streams": {"type": "array", "items": STR},
                                                     "per_hour": {"type": "number"}},
                                                    ("source", "streams", "per_hour")), {"type": "null"}]},
                      "summary": STR}, ("state", "learned_hours", "warmup_hours", "seeded_from", "summary")),
}, ("stream", "current_count", "baseline", "score", "surge"))

DRILL = obj({
    "id": STR, "title": STR, "schedule": {"type": "string", "description": "cron, in `timezone`"},
    "timezone": STR, "scenario": {"enum": ["surge", "trigger"]}, "playbook": STR, "region": STR,
    "channels": {"enum": ["sandbox", "real"]}, "max_duration": {"type": "number", "description": "seconds"},
    "success": obj({"ack_within": {"type": "number"}, "min_ack_rate": {"type": "number"}}),
    "audience": {"type": ["object", "null"]},
    "next_runs": {"type": "array", "items": {"type": "string", "format": "date-time"}},
    "last_run": {"oneOf": [ref("DrillRun"), {"type": "null"}]},
}, ("id", "title", "schedule", "timezone", "scenario", "next_runs"))

BOARD = obj({
    "counts": {"type": "object", "description": "version -> channel -> status -> count",
               "additionalProperties": {"type": "object", "additionalProperties": {
                   "type": "object", "additionalProperties": INT}}},
    "acks": {"type": "object", "description": "version -> people who acknowledged it",
             "additionalProperties": INT},
    "current_version": {"type": ["integer", "null"]},
    "not_acknowledged": {"type": "array", "items": STR},
}, ("counts", "acks", "current_version", "not_acknowledged"))

# A cluster-wide reload's report (web/reload.py).
_IDS = {"type": "array", "items": STR}
RELOAD_REPORT = obj({
    "id": STR, "by": STR, "requested_at": {"type": "string", "format": "date-time"},
    "result": {"enum": ["took", "refused", "incomplete"]},
    "took": _IDS, "refused": _IDS, "no_answer": _IDS,
    "instances": {"type": "array", "items": obj({
        "instance": STR, "outcome": {"enum": ["took", "refused", "no_answer"]}, "problems": _IDS,
        "config": {"type": "string", "description": "fingerprint of the config files in use"},
        "at": {"type": "string", "format": "date-time",
               "description": "when it answered (no_answer: when it was last seen)"},
    }, ("instance", "outcome", "problems", "config", "at"))},
}, ("id", "by", "requested_at", "result", "took", "refused", "no_answer", "instances"))


@cache
def model_schemas() -> dict[str, Schema]:
    """Incident, ScriptVersion, TimelineEvent, the incident report and what they contain, from the models."""
    out: dict[str, Schema] = {}
    for model in (Incident, ScriptVersion, TimelineEvent, IncidentReport, DrillRun, DrillReport):
        schema = model.model_json_schema(mode="serialization", ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    # The API shows an incident without its playbook snapshot, and roles as role views.
    incident = dict(out.pop("Incident"))
    properties = {k: v for k, v in incident["properties"].items() if k != "playbook_snapshot"}
    properties["roles"] = {"type": "array", "items": ref("RoleView")}
    properties["timeline"] = {"type": "array", "items": ref("TimelineEvent"),
                              "description": "oldest first; in the detail and the trigger's answer"}
    properties["existing"] = {"type": "boolean", "description": "in the trigger's answer: already open on that key"}
    out["IncidentView"] = incident | {"properties": properties, "title": "IncidentView"}
    drafted = dict(out["ScriptVersion"])
    drafted["properties"] = drafted["properties"] | {
        "deliveries": {"type": "integer", "description": "deliveries queued (0 while it awaits approval)"}}
    out["DraftedScriptVersion"] = drafted | {"title": "DraftedScriptVersion",
                                             "required": [*drafted.get("required", []), "deliveries"]}
    return out


def json_answer(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(schema: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 408: "Timeout", 409: "Conflict",
    413: "TooLarge", 503: "Unavailable",
}


def op(summary: str, role: Role | None, ok: dict[int, Schema], *, body: Schema | None = None,
       errors: tuple[int, ...] = (), parameters: list[Schema] | None = None, description: str = "",
       store: bool = True) -> Schema:
    """One operation. `role` None: open to anyone (security: []). Besides `errors`, the
    statuses every operation of its kind can answer are listed: 401 and 403 where a role
    is required; 400 where a body or a query parameter can be malformed, and 408 and 413
    where a body is read (web/guard.py, the app's body size limit); 503 where the store
    is read (`store`)."""
    responses: dict[str, Schema] = {str(status): answer for status, answer in ok.items()}
    codes = set(errors) | ({401, 403} if role is not None else set())
    if body is not None:
        codes |= {400, 408, 413}
    if any(p["in"] == "query" for p in parameters or ()):
        codes.add(400)
    if store:
        codes.add(503)
    for status in sorted(codes):
        responses[str(status)] = {"$ref": f"#/components/responses/{ERRORS[status]}"}
    operation: Schema = {"summary": summary, "responses": responses}
    if description:
        operation["description"] = description
    if role is None:
        operation["security"] = []
    else:
        operation["security"] = [{"bearer": []}, {"cookie": []}]
        operation["x-required-role"] = role.value
    if body is not None:
        operation["requestBody"] = body
    if parameters:
        operation["parameters"] = parameters
    return operation


def path_param(name: str, schema: Schema = STR, description: str = "") -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def query_flag(name: str, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]}}


ID = path_param("id", description="incident id, e.g. INC-20261125-7fb888")
DRILL_ID = path_param("id", description="drill id, e.g. weekly-broadband")
VERSION = path_param("version", INT, "script version")
PLAYBOOK_ID = path_param("id", description="playbook id, e.g. broadband-outage")


STATS_PARAMS = [
    {"name": "from", "in": "query", "required": False, "schema": {"type": "string", "format": "date"},
     "description": "first local day (default: the first of this month); 1970-01-01 to 9998-12-31"},
    {"name": "to", "in": "query", "required": False, "schema": {"type": "string", "format": "date"},
     "description": "last local day, included (default: today); at most 366 days from `from`; "
                    "1970-01-01 to 9998-12-31"},
    {"name": "by", "in": "query", "required": False, "schema": {"enum": ["day", "month"]}},
]


@cache
def stats_schemas() -> dict[str, Schema]:
    schema = Statistics.model_json_schema(mode="serialization", ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), "Statistics": schema}
