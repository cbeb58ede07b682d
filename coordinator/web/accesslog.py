"""The access log: one short line per request, with no secret in it.

Provider webhooks that went well (three status callbacks per SMS, one inbound per reply:
tens of thousands in an incident) are logged at DEBUG, so the log at INFO keeps what a
person did and what went wrong; the signed ack links' tokens (credentials for three days)
never reach the log."""

from __future__ import annotations

import logging
import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

_ACK_TOKEN = re.compile(r"^/ack/[^/?]+")


def logged_path(path: str) -> str:
    return _ACK_TOKEN.sub("/ack/<token>", path)


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
