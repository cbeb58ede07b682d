"""Network alarms in over HTTP: Alertmanager's webhook receiver and a PagerDuty Events
API v2 endpoint. Each answers to its own secret, compared in constant time, never to a
session or a user's token (`@signed`): Alertmanager sends `Authorization: Bearer
COORDINATOR_ALERTMANAGER_TOKEN` (its http_config `authorization.credentials`), a
PagerDuty-style event carries COORDINATOR_PAGERDUTY_ROUTING_KEY as its routing_key. A
receiver whose secret is not set answers 404 `not_configured`, saying which setting
turns it on. Parsing: alarms/payloads.py; what happens: alarms/intake.py."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from aiohttp import web

from ..alarms.intake import AlarmIntake
from ..alarms.payloads import alertmanager_alarms, pagerduty_alarm, read_body
from ..errors import PayloadInvalid
from .auth import signed
from .errors import error_response
from .state import SERVICES, Services

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

ALERTMANAGER_PATH = "/hooks/alertmanager"
PAGERDUTY_PATH = "/hooks/pagerduty/v2/enqueue"


def _intake(services: Services) -> AlarmIntake:
    return AlarmIntake(store=services.store, pipeline=services.pipeline, rules=lambda: services.catalog.alerts,
                       clock=services.clock)


def same(sent: str, expected: str) -> bool:
    """Constant-time comparison of a secret (a sent value that is not ASCII is simply wrong)."""
    return sent.isascii() and hmac.compare_digest(sent.encode(), expected.encode())


@routes.post(ALERTMANAGER_PATH)
@signed
async def alertmanager_webhook(request: web.Request) -> web.Response:
    """Alertmanager's webhook (payload version 4): every alert of the group handled, the
    answer listing what became of each. Alertmanager reads only the status: 200."""
    services = request.app[SERVICES]
    token = services.settings.alertmanager_token
    if token is None:
        return error_response(404, "not_configured", "the Alertmanager receiver is not configured: set "
                                                     "COORDINATOR_ALERTMANAGER_TOKEN to turn it on")
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not same(sent.strip(), token):
        log.warning("refused an Alertmanager webhook: missing or wrong bearer token")
        response = error_response(401, "unauthorized", "send Authorization: Bearer COORDINATOR_ALERTMANAGER_TOKEN")
        response.headers["WWW-Authenticate"] = 'Bearer realm="coordinator-alertmanager"'
        return response
    try:
        alarms = alertmanager_alarms(read_body(await request.read()))
    except PayloadInvalid as exc:
        return error_response(400, "invalid_payload", f"not an Alertmanager webhook (version 4): {exc}", exc.problems)
    intake = _intake(services)
    handled = [await intake.handle(alarm) for alarm in alarms]
    return web.json_response({"status": "success", "alerts": [h.as_json() for h in handled]})


def _pd(status: int, state: str, message: str, errors: list[str], **extra: Any) -> web.Response:
    return web.json_response({"status": state, "message": message, "errors": errors, **extra}, status=status)


@routes.post(PAGERDUTY_PATH)
@signed
async def pagerduty_enqueue(request: web.Request) -> web.Response:
    """PagerDuty's Events API v2, answered as PagerDuty answers: 202 with the dedup_key,
    400 `invalid event` with the errors."""
    services = request.app[SERVICES]
    routing_key = services.settings.pagerduty_routing_key
    if routing_key is None:
        return _pd(404, "not configured", "the PagerDuty endpoint is not configured: set "
                                          "COORDINATOR_PAGERDUTY_ROUTING_KEY to turn it on", [])
    try:
        data = read_body(await request.read())
    except PayloadInvalid as exc:
        return _pd(400, "invalid event", "Event object is invalid", exc.problems)
    sent = data.get("routing_key")
    if not isinstance(sent, str) or not same(sent, routing_key):
        log.warning("refused a PagerDuty event: missing or wrong routing_key")
        return _pd(401, "unauthorized", "routing_key is missing or wrong",
                   ["routing_key: not the key this service expects (COORDINATOR_PAGERDUTY_ROUTING_KEY)"])
    try:
        alarm = pagerduty_alarm(data)
    except PayloadInvalid as exc:
        return _pd(400, "invalid event", "Event object is invalid", exc.problems)
    await _intake(services).handle(alarm)
    return web.json_response({"status": "success", "message": "Event processed", "dedup_key": alarm.key},
                             status=202)
