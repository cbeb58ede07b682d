"""The access log: one short line per request, with no secret in it.

Provider webhooks that went well (three status callbacks per SMS, one inbound per reply:
tens of thousands in an incident) are logged at DEBUG, so the log at INFO keeps what a
person did and what went wrong; the signed ack links' tokens (credentials for three days)
never reach the log."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from ..logs import start_ids

_ACK_TOKEN = re.compile(r"^(/hooks/dingtalk)?/ack/[^/?]+")  # the email's link, the DingTalk card's
# A request id a proxy sent is kept if it looks like one (it goes into every log line).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@web.middleware
async def request_ids(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every line logged while a request is handled (the access log's too) carries its id,
    which the answer repeats in X-Request-Id."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
    start_ids(request_id=request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    response.headers["X-Request-Id"] = request_id
    return response


def logged_path(path: str) -> str:
    return _ACK_TOKEN.sub(r"\1/ack/<token>", path)


class AccessLog(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        quiet = request.path.startswith("/hooks/") and response.status < 400
        level = logging.DEBUG if quiet else logging.INFO
        if self.logger.isEnabledFor(level):
            self.logger.log(level, '%s "%s %s" %d %d %.1f ms', request.remote, request.method,
                            logged_path(request.path), response.status, response.body_length, time * 1000)

    @property
    def enabled(self) -> bool:
        # Checked per request by aiohttp before it times and logs it: nothing to do
        # when the logger drops INFO (and so DEBUG too).
        return self.logger.isEnabledFor(logging.INFO)
