"""The OpenAPI 3.1 document of the JSON API, served at GET /api/openapi.json.

Written by hand beside the routes, with the stored records' schemas generated from
their pydantic models. tests/test_openapi.py keeps it true: every API route must appear
here with its method and the role it declares (`x-required-role`), the document must
validate, and real answers must match the schemas documented for them. A new route
needs an entry in PATHS.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web

from .. import __version__
from ..config.users import Role
from ..store.records import MEDIA
from .alarms_openapi import alarm_paths, alarm_schemas
from .openapi_messengers import messenger_paths
from .auth import COOKIE_NAME, CSRF_HEADER, public
from .openapi_parts import (
    BOARD,
    BOOL,
    BY,
    COMPLAINT,
    DRILL,
    DRILL_ID,
    ERROR,
    ID,
    INT,
    INTAKE_COUNTS,
    PLAYBOOK_ID,
    REJECTION,
    RELOAD_REPORT,
    ROLE_VIEW,
    STATS_PARAMS,
    STR,
    STREAM,
    VERSION,
    Schema,
    json_answer,
    json_body,
    model_schemas,
    obj,
    op,
    path_param,
    query_flag,
    ref,
    stats_schemas,
)

routes = web.RouteTableDef()

def _paths() -> dict[str, dict[str, Schema]]:
    incident = ref("IncidentView")
    return {
        "/healthz": {"get": op("Liveness, store reachability and delivery channels", None, {
            200: json_answer(obj({
                "status": {"enum": ["ok", "degraded"]}, "store": STR, "playbooks": INT,
                "channels": obj({m: {"enum": ["ok", "missing"]} for m in MEDIA}, MEDIA),
                "missing_channels": {"type": "object", "additionalProperties": {
                    "type": "array", "items": {"enum": ["sms", "email"]}}},
            }, ("status", "store", "channels", "missing_channels")),
                "degraded: a playbook needs a channel (SMS, email) that is not configured; its messages fail"),
            503: json_answer(obj({"status": {"const": "unavailable"}, "store": STR}, ("status", "store")),
                       "the store is unreachable")}, store=False)},
        "/metrics": {"get": op(
            "Prometheus metrics (exposition format); with COORDINATOR_METRICS_TOKEN set, only with that bearer token",
            None, {200: {"description": "the metrics", "content": {"text/plain": {"schema": STR}}},
                   401: json_answer(ERROR, "COORDINATOR_METRICS_TOKEN is set and was not sent")})},
        "/livez": {"get": op("Liveness: the process answers", None, {
            200: json_answer(obj({"status": {"const": "alive"}}, ("status",)))})},
        "/readyz": {"get": op("Readiness: store reachable, config loaded, every channel a playbook needs configured",
                              None, {
            200: json_answer(obj({"status": {"const": "ready"}, "problems": {"type": "array", "maxItems": 0}},
                                 ("status", "problems"))),
            503: json_answer(obj({"status": {"const": "not_ready"}, "problems": {"type": "array", "items": STR}},
                                 ("status", "problems")), "what is wrong, one line each")}, store=False)},
        "/api/openapi.json": {"get": op("This document", None, {200: json_answer({"type": "object"})}, store=False)},
        "/api/admin/reload": {"post": op(
            "Reload the config files on every instance sharing the store", Role.leader, {
                200: json_answer(RELOAD_REPORT, "every live instance took the new config"),
                202: json_answer(RELOAD_REPORT, "none refused; some did not answer within the wait (they will)"),
                409: json_answer(obj({"error": ERROR["properties"]["error"], "reload": RELOAD_REPORT},
                                     ("error", "reload")),
                                 "`reload_refused`: an instance refused; `details` lists the problems, each "
                                 "refusing instance keeps the config it had")},
            parameters=[{"name": "wait", "in": "query", "required": False,
                         "schema": {"type": "number", "minimum": 0, "maximum": 60, "default": 10},
                         "description": "seconds to wait for the live instances' answers"}],
            description="Announced through the store: each live instance (seen within 10 s) builds and checks "
                        "the files, swaps them in or refuses, and answers. The admin token or a leader may ask. "
                        "`wait` outside 0-60 is 400 `invalid_wait`.")},
        "/api/complaints": {"post": op(
            "Complaint intake", Role.intake,
            {200: json_answer(obj(INTAKE_COUNTS, ("accepted", "duplicate", "rejected", "errors")),
                        "at least one complaint accepted or already known; refused ones under `errors`")},
            body={"required": True, "content": {
                "application/json": {"schema": {"oneOf": [ref("Complaint"),
                                                          {"type": "array", "items": ref("Complaint")}]}},
                "application/x-ndjson": {"schema": {"type": "string", "description": "one Complaint per line"}},
            }},
            description="Authorised by the intake token (or the admin token). When every item is refused "
                        "the answer is 400 in the error shape with the counts beside it "
                        "(`invalid_complaints`). A body that cannot be read stores nothing and is 400 "
                        "(`invalid_json`: not JSON, nested deeper than 32 levels, an integer of more than "
                        "4,300 digits, NaN or an infinite number; `invalid_body`: not UTF-8, or neither an "
                        "object nor an array; `empty_body`) or 413 (`too_many_items`, `body_too_large`). "
                        "In NDJSON such a line is refused alone, under `errors` with its line number.")},
        "/api/streams": {"get": op("Every stream's counts, baseline, score and open surge", Role.viewer, {
            200: json_answer(obj({"streams": {"type": "array", "items": ref("Stream")}}, ("streams",)))})},
        "/api/stats": {"get": op(
            "Complaints per day or month by category, region and channel, repeat share, and incidents per "
            "period with their median time figures (drills apart)", Role.viewer,
            {200: json_answer(ref("Statistics"))}, parameters=STATS_PARAMS,
            description="Local days in COORDINATOR_TIMEZONE. The same figures as the page /stats and its CSV "
                        "export /stats.csv?table=complaints|incidents. A period that is not one is 400 "
                        "`invalid_period`, its `details` naming the parameter and the problem (`not_a_date`, "
                        "`out_of_range`, `day_or_month`, `before_from`, `too_long`): a day that is not YYYY-MM-DD or "
                        "not between 1970-01-01 and 9998-12-31, `to` before `from`, more than 366 days.")},
        "/api/incidents": {
            "post": op("Open an incident by hand (manual trigger)", Role.leader, {
                201: json_answer(incident, "opened"),
                200: json_answer(incident, "one is already open on that key (`existing`: true)")},
                body=json_body(obj({
                    "playbook": STR, "region": STR, "params": {"type": "object", "additionalProperties": STR},
                    "drill": BOOL, "severity": {"enum": ["minor", "major", "critical"]}, "by": BY,
                }, ("playbook", "region"))), errors=(404, 409),
                description="404 when no such playbook; 409 `invalid_action` when the playbook cannot open "
                            "there (a region it does not cover or that contacts do not know) or the severity "
                            "is unknown; 400 `invalid_params` naming each unknown or missing parameter."),
            "get": op("Incidents, newest first", Role.viewer, {
                200: json_answer(obj({"incidents": {"type": "array", "items": incident}}, ("incidents",)))},
                parameters=[query_flag("open", "only open ones"), query_flag("drill", "drills or real ones"),
                            {"name": "playbook", "in": "query", "required": False, "schema": STR}]),
        },
        "/api/incidents/{id}": {"get": op("One incident with roles and timeline", Role.viewer,
                                          {200: json_answer(incident)}, parameters=[ID], errors=(404,))},
        "/api/incidents/{id}/ack": {"post": op(
            "Acknowledge, on behalf of a role holder, the role(s) they hold", Role.leader, {200: json_answer(incident)},
            body=json_body(obj({"person": STR, "role": STR, "via": STR}, ("person",))),
            parameters=[ID], errors=(404, 409))},
        "/api/incidents/{id}/resolve": {"post": op(
            "Resolve (sends the stand-down)", Role.leader, {200: json_answer(incident)},
            body=json_body(obj({"note": STR, "by": BY}), required=False), parameters=[ID], errors=(404, 409))},
        "/api/incidents/{id}/severity": {"post": op(
            "Change the severity", Role.leader, {200: json_answer(incident)},
            body=json_body(obj({"severity": {"enum": ["minor", "major", "critical"]}, "reason": STR, "by": BY},
                            ("severity",))), parameters=[ID], errors=(404, 409))},
        "/api/incidents/{id}/notes": {"post": op(
            "Add a note to the timeline", Role.leader,
            {201: json_answer(obj({"ok": {"const": True}}, ("ok",)), "recorded")},
            body=json_body(obj({"text": STR, "by": BY}, ("text",))), parameters=[ID], errors=(404, 409))},
        "/api/incidents/{id}/scripts": {
            "get": op("Every version of the official script", Role.viewer, {
                200: json_answer(obj({"scripts": {"type": "array", "items": ref("ScriptVersion")}}, ("scripts",)))},
                parameters=[ID], errors=(404,)),
            "post": op("Draft a new version (sent at once when the playbook approves automatically)", Role.leader, {
                201: json_answer(ref("DraftedScriptVersion"), "the new version and how many deliveries it queued")},
                body=json_body(obj({
                    "params": {"type": "object", "additionalProperties": STR}, "sms": STR, "email_subject": STR,
                    "email_text": STR, "email_html": STR, "by": BY}), required=False),
                parameters=[ID], errors=(404, 409)),
        },
        "/api/incidents/{id}/scripts/{version}/approve": {"post": op(
            "Approve a version and send it", Role.leader,
            {200: json_answer(obj({"version": INT, "deliveries": INT}, ("version", "deliveries")))},
            body=json_body(obj({"by": BY}), required=False), parameters=[ID, VERSION], errors=(404, 409),
            description="400 when the version is not a number.")},
        "/api/incidents/{id}/scripts/preview": {"post": op(
            "The next version as a draft would render it, not saved (the console's editor)", Role.leader,
            {200: json_answer(ref("ScriptVersion"), "the version as it would be drafted; nothing is stored")},
            body=json_body(obj({"params": {"type": "object", "additionalProperties": STR}, "sms": STR,
                             "email_subject": STR, "email_text": STR, "email_html": STR}), required=False),
            parameters=[ID], errors=(404,))},
        "/api/incidents/{id}/remind": {"post": op(
            "Remind now everyone the wording in force reached who has not acknowledged it", Role.leader,
            {200: json_answer(obj({"version": INT, "messages": INT}, ("version", "messages")),
                        "the version reminded of and the reminders queued")},
            body=json_body(obj({"by": BY}), required=False), parameters=[ID], errors=(404, 409),
            description="409 when the incident is not open or has no approved wording.")},
        "/api/playbooks/{id}/preview": {"post": op(
            "Version 1 of the script as the playbook would render it, not saved (the trigger page)", Role.leader,
            {200: json_answer(ref("ScriptVersion"), "the version; missing required parameters show as placeholders "
                                              "and are listed in `missing`")},
            body=json_body(obj({"region": STR, "params": {"type": "object", "additionalProperties": STR},
                             "drill": BOOL, "severity": {"enum": ["minor", "major", "critical"]}}, ("region",))),
            parameters=[PLAYBOOK_ID], errors=(404,))},
        "/api/incidents/{id}/deliveries": {"get": op(
            "Fan-out progress and who has not acknowledged", Role.viewer, {200: json_answer(ref("DeliveryBoard"))},
            parameters=[ID], errors=(404,))},
        "/api/incidents/{id}/report": {"get": op(
            "The incident's evaluation report (coordinator/reports/incident.py)", Role.viewer,
            {200: {"description": "the report; a printable page with ?format=html or Accept: text/html",
                   "content": {"application/json": {"schema": ref("IncidentReport")}, "text/html": {"schema": STR}}}},
            parameters=[ID, {"name": "format", "in": "query", "required": False,
                             "schema": {"type": "string", "enum": ["json", "html"]}}], errors=(404,))},
        "/api/drills": {"get": op("Every drill with its schedule, next runs and last run", Role.viewer, {
            200: json_answer(obj({"drills": {"type": "array", "items": DRILL}}, ("drills",)))})},
        "/api/drills/{id}/run": {"post": op(
            "Run a drill now", Role.trainer, {201: json_answer(obj({"run": ref("DrillRun")}, ("run",)), "started")},
            body=json_body(obj({"by": BY}), required=False), parameters=[DRILL_ID], errors=(404, 409),
            description="409 `drill_refused` when a drill in sandbox channels is asked of a service that sends "
                        "through real providers.")},
        "/api/drills/{id}/reports": {"get": op(
            "The reports of a drill's last runs (newest first) with their trend; every run incl. missed ones",
            Role.viewer,
            {200: {"description": "reports; a printable page with ?format=html or Accept: text/html",
                   "content": {"application/json": {"schema": obj({
                       "drill": DRILL, "runs": {"type": "array", "items": ref("DrillRun")},
                       "reports": {"type": "array", "items": ref("DrillReport")}}, ("drill", "runs", "reports"))},
                       "text/html": {"schema": STR}}}},
            parameters=[DRILL_ID, {"name": "format", "in": "query", "required": False,
                                   "schema": {"type": "string", "enum": ["json", "html"]}}], errors=(404,))},
        # Provider webhooks and the signed ack links: no session or token; each checks
        # its own signature.
        "/hooks/twilio/status": {"post": _signed_op("Twilio status callback", {204: {"description": "recorded"}},
                                                    body=_TWILIO_FORM)},
        "/hooks/twilio/inbound": {"post": _signed_op("Twilio inbound SMS (replies: 1/确认, STOP, START)", {
            200: {"description": "TwiML: the answer to the reply, if any", "content": {"text/xml": {"schema": STR}}}},
            body=_TWILIO_FORM)},
        "/ack/{token}": {
            "get": _signed_op("The page of an email ack link (acknowledges nothing)", _HTML, token=True),
            "post": _signed_op("Acknowledge through an email ack link", _HTML, token=True, body={
                "required": False, "description": "the page's button posts an empty form",
                "content": {"application/x-www-form-urlencoded": {"schema": obj({}, extra=True)}}}),
        },
        **alarm_paths(),  # network alarms in: Alertmanager, PagerDuty (web/alarms_openapi.py)
        **messenger_paths(),  # DingTalk and WeCom callbacks (web/openapi_messengers.py)
    }


_HTML = {200: {"description": "a page", "content": {"text/html": {"schema": STR}}},
         403: {"description": "the link is invalid or expired", "content": {"text/html": {"schema": STR}}}}


# What Twilio posts (a form; the signature covers every field, these are the ones read).
_TWILIO_FORM: Schema = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": obj({
    "MessageSid": STR, "MessageStatus": STR, "ErrorCode": STR, "From": STR, "Body": STR}, extra=True)}}}


def _signed_op(summary: str, ok: dict[int, Schema], token: bool = False, body: Schema | None = None) -> Schema:
    operation = op(summary, None, ok, body=body)
    operation["tags"] = ["signed"]
    if not token:
        operation["parameters"] = [{"name": "X-Twilio-Signature", "in": "header", "required": True, "schema": STR}]
        operation["responses"]["403"] = {"$ref": "#/components/responses/Forbidden"}
    else:
        operation["parameters"] = [path_param("token", description="the signed token from the email")]
    return operation


@cache
def document() -> dict[str, Any]:
    schemas: dict[str, Schema] = {
        "Error": ERROR, "Complaint": COMPLAINT, "Rejection": REJECTION, "RoleView": ROLE_VIEW,
        "Stream": STREAM, "DeliveryBoard": BOARD,
        **model_schemas(),
        **stats_schemas(),
        **alarm_schemas(),
    }
    responses = {
        name: {"description": description, "content": {"application/json": {"schema": ref("Error")}}}
        for name, description in (
            ("BadRequest", "the request is malformed or a field is invalid (a body that is not JSON, or nested "
                           "deeper than 32 levels, is `invalid_json`)"),
            ("Unauthorized", "no credentials, or a bearer token that is not valid"),
            ("Forbidden", "the caller's role does not allow this, or the CSRF token is missing or wrong"),
            ("NotFound", "no such incident, playbook, drill or version"),
            ("Conflict", "not possible in the current state of the incident or drill, or with these values "
                         "(`invalid_action`, `drill_refused`)"),
            ("Timeout", "the request body did not arrive in time (COORDINATOR_BODY_TIMEOUT_SECONDS)"),
            ("TooLarge", "the body is too large or has too many items"),
            ("Unavailable", "the store is unavailable; retry later (`store_unavailable`)"),
        )
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Coordinator API",
            "version": __version__,
            "description": "Emergency incident-response coordinator. Every error is "
                           '`{"error": {"code", "message", "details"}}`. Roles nest: leader > trainer > viewer; '
                           "`intake` is held only by the intake token; the admin token holds every role.",
        },
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a user's API token (`coordinator user token NAME`), the intake token "
                                          "(COORDINATOR_INTAKE_TOKEN) or the admin token (COORDINATOR_ADMIN_TOKEN)"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME,
                           "description": f"the session of the login page; unsafe methods must also send the "
                                          f"session's CSRF token in `{CSRF_HEADER}`"},
            },
        },
    }


@routes.get("/api/openapi.json")
@public
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())
