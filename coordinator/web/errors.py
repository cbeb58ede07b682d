"""Every API error has one shape: {"error": {"code", "message", "details"}} with a 4xx/5xx."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from ..errors import IncidentNotFound, InvalidAction, ParamsInvalid, PlaybookNotFound, StoreError
from ..errors import ScriptError
from .. import metrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, details: list[Any] | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "details": details or []}}
    body.update(extra)
    return web.json_response(body, status=status)


_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type",
}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        message = exc.text if exc.status == 413 and exc.text else exc.reason
        return error_response(exc.status, _CODES.get(exc.status, "http_error"), message or exc.reason)
    except (IncidentNotFound, PlaybookNotFound) as exc:
        return error_response(404, "not_found", str(exc))
    except ParamsInvalid as exc:
        return error_response(400, "invalid_params", str(exc), exc.problems)
    except (InvalidAction, ScriptError) as exc:
        return error_response(409, "invalid_action", str(exc))
    except StoreError as exc:
        metrics.STORE_ERRORS.inc()
        log.error("store unavailable: %s", exc)
        return error_response(503, "store_unavailable", "the store is unavailable; retry later")
