"""The service's log lines: text on a terminal, JSON lines (`COORDINATOR_LOG_FORMAT=json`)
for a log pipeline, each with time, level, logger, event, and the ids in play (request,
incident, delivery, drill run) from the context that logs it. No personal data: the
code logs ids, never phones, emails, subscriber numbers or tokens (tests/test_logs.py
scans a whole demo run), and the chattiest third-party loggers are kept quiet."""

from __future__ import annotations

import contextlib
import logging
import sys
from contextvars import ContextVar
from typing import Iterator

from pythonjsonlogger.json import JsonFormatter

IDS = ("request_id", "incident_id", "delivery_id", "drill_run")
_CONTEXT: ContextVar[dict[str, str]] = ContextVar("log_ids", default={})
# Third-party loggers that write personal data or every statement at INFO or DEBUG:
# aiosqlite (statements with their parameters), aiosmtpd (the sandbox inbox's sessions).
QUIET = {"aiosqlite": logging.INFO, "mail.log": logging.WARNING}


@contextlib.contextmanager
def log_ids(**ids: str | None) -> Iterator[None]:
    """Every line logged inside carries these ids (None: leave that one as it is)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def start_ids(**ids: str) -> None:
    """This task's lines carry these ids from now on, and no others (a request's start:
    its access line, logged after the handler, carries its id too)."""
    _CONTEXT.set(dict(ids))


def current_ids() -> dict[str, str]:
    return dict(_CONTEXT.get())


class _Ids(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _CONTEXT.get().items():
            setattr(record, name, value)
        return True


def configure(level: int, fmt: str = "text", stream: object = None) -> logging.Handler:
    """Log to `stream` (stderr) at `level` as "text" or "json"; returns the handler."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r}: text or json")
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.addFilter(_Ids())
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, quiet in QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, level))
    return handler


def json_formatter() -> logging.Formatter:
    return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "message": "event"},
                         datefmt="%Y-%m-%dT%H:%M:%S%z")


def ids_filter() -> logging.Filter:
    """The filter that puts the context's ids on each record (for a handler of one's own)."""
    return _Ids()
