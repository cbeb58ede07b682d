"""Slow clients are cut off: a request head has `header_timeout`, a body `body_timeout`,
an idle kept-alive connection `keepalive_timeout`, a response the client does not take
`write_timeout`; one address holds at most `max_connections_per_client` connections.

aiohttp parses the head before any middleware runs, its only clock on it the keep-alive
timer (75 s under run_app); so the head deadline, the cap and the write stall live at the
connection (ConnectionGuard, the protocol factory for `loop.create_server`, wrapping
aiohttp's RequestHandler), the body deadline in a middleware. `start_guarded_site` and
`run_guarded` serve an app through both, as AppRunner + TCPSite and `web.run_app` do."""

from __future__ import annotations

import asyncio
import logging
import math
from contextlib import suppress
from dataclasses import dataclass, fields
from typing import Awaitable, Callable, cast

from aiohttp import web

from ..errors import StalledClient
from .accesslog import AccessLog
from .errors import error_response

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RawHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
WARN_EVERY = 60.0  # seconds: one warning per address and reason, however many connections


@dataclass(frozen=True)
class GuardLimits:
    # A head is a few KB (aiohttp caps a line at 8 KB) sent in one write: 10 s covers a slow
    # mobile link and three lost packets retransmitted (1 + 2 + 4 s). Counted from the
    # connection's opening, or on a kept-alive one from the first byte of the next head.
    header_timeout: float = 10.0
    # Bodies here are JSON and forms of a few KB; 30 s still lets 1 MB in at ~270 kbit/s.
    body_timeout: float = 30.0
    # All loopback clients are 127.0.0.1 and the benchmark runs 200 at once; an office behind
    # one NAT is many people with a live page each. Behind a reverse proxy every client has
    # the proxy's address: raise this there, or it caps the proxy.
    max_connections_per_client: int = 256
    # Idle kept-alive connections count against the cap: 15 s keeps a page's burst of
    # requests on one connection without holding slots for minutes (run_app's default: 75 s).
    keepalive_timeout: float = 15.0
    # A reading client empties the 64 KB transport buffer in milliseconds; one that has
    # taken none of it for 10 s is not reading, or its network is gone.
    write_timeout: float = 10.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "max_connections_per_client":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"GuardLimits.{field.name} must be a positive integer, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"GuardLimits.{field.name} must be a positive number of seconds, got {value!r}")


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
LIMITS = web.AppKey("guard_limits", GuardLimits)
DEFAULT_LIMITS = GuardLimits()


def limits_of(request: web.Request) -> GuardLimits:
    """The limits the app is served with (start_guarded_site), else the defaults."""
    return request.config_dict.get(LIMITS, DEFAULT_LIMITS)


@web.middleware
async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read a request's whole body within `body_timeout` before the handler runs, so a body
    trickled in is answered 408 instead of holding a handler. The body is cached: the
    handler's read()/json()/text()/post() return at once, and client_max_size still
    raises 413 here. Place it right after json_errors, before anything that reads bodies.

    A form is parsed here too, so one that cannot be read is a clear 400 and never an
    exception in a handler or the CSRF check: aiohttp's post() raises ValueError for
    multipart without a boundary or a part without a name, UnicodeDecodeError (a
    ValueError) for bytes that are not UTF-8, LookupError for an unknown charset."""
    if request.body_exists:
        timeout = limits_of(request).body_timeout
        try:
            async with asyncio.timeout(timeout):
                if request.content_type in FORM_TYPES and request.method in request.POST_METHODS:
                    await request.post()  # multipart is parsed from the stream, not from read()'s cache
                else:
                    await request.read()
        except (ValueError, LookupError) as exc:
            return error_response(400, "bad_form", f"the {request.content_type} body cannot be read: {exc}")
        except TimeoutError:
            response = error_response(408, "request_timeout", f"the request body did not arrive within {timeout:g} s")
            response.force_close()  # the rest of the body may still come: no next request here
            return response
    return await handler(request)


async def write_or_drop(response: web.StreamResponse, data: bytes, timeout: float) -> None:
    """`await response.write(data)`, but a client that does not read is dropped: once the
    socket buffers are full, write() waits on drain for as long as the client likes. If
    the write is not done in `timeout` seconds the connection is aborted (close() would
    wait to flush to that same client) and StalledClient raised."""
    try:
        async with asyncio.timeout(timeout):
            await response.write(data)
    except TimeoutError:
        # The one private attribute used: a StreamResponse keeps the request it was
        # prepared for in `_req`, and has no public way back to its connection.
        request = getattr(response, "_req", None)
        transport = request.transport if request is not None else None
        if transport is not None:
            transport.abort()
        raise StalledClient(f"the client took nothing for {timeout:g} s; dropped") from None


class ConnectionGuard:
    """Protocol factory for `loop.create_server`: each connection is `server`'s own
    RequestHandler, refused at once if its address is at the cap, aborted if its request
    head or a stalled response outlasts the limits. Warnings: one a minute per address and
    reason. Wraps `server.request_handler` (public; each new RequestHandler copies it) to
    see requests begin and end, so it must be made before the server's first connection."""

    def __init__(self, server: web.Server, limits: GuardLimits) -> None:
        self.limits = limits
        # connections closed: address at the cap; head late; a response untaken for write_timeout
        self.refused = self.header_timeouts = self.write_stalls = 0
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._open: dict[str, int] = {}
        self._live: dict[web.RequestHandler, _Connection] = {}
        self._warned: dict[tuple[str, str], tuple[float, int]] = {}
        server.request_handler = self._watch(server.request_handler)

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    def connections_from(self, address: str) -> int:
        return self._open.get(address, 0)

    def _watch(self, handle: RawHandler) -> RawHandler:
        async def watched(request: web.BaseRequest) -> web.StreamResponse:
            connection = self._live.get(request.protocol)
            if connection is None:  # a connection not made through this guard
                return await handle(request)
            connection.request_started()
            try:
                return await handle(request)
            finally:
                connection.request_ended()
        return watched

    def _admit(self, connection: _Connection, address: str | None) -> web.RequestHandler | None:
        if address is not None:
            held = self._open.get(address, 0)
            if held >= self.limits.max_connections_per_client:
                self.refused += 1
                self._warn("refused", address, f"{held} connections open, the most allowed; refusing more")
                return None
            self._open[address] = held + 1
        handler = self._server()  # what TCPSite's create_server would have made
        self._live[handler] = connection
        return handler

    def _release(self, handler: web.RequestHandler, address: str | None) -> None:
        del self._live[handler]
        if address is not None:
            held = self._open.pop(address) - 1
            if held:
                self._open[address] = held

    def _warn(self, reason: str, address: str, what: str) -> None:
        now = self._loop.time()
        last, quiet = self._warned.get((reason, address), (-math.inf, 0))
        if now - last < WARN_EVERY:
            self._warned[reason, address] = (last, quiet + 1)
            return
        if len(self._warned) > 1024:  # forget addresses not heard from in a minute
            self._warned = {k: v for k, v in self._warned.items() if now - v[0] < WARN_EVERY}
        self._warned[reason, address] = (now, 0)
        log.warning("client %s: %s%s", address, what, f" ({quiet} more since the last warning)" if quiet else "")


class _Connection(asyncio.Protocol):
    """One client connection: aiohttp's RequestHandler inside, the deadlines around it."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._limits = guard.limits
        self._handler: web.RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._address: str | None = None
        self._in_request = False
        self._head_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._address = peer[0] if isinstance(peer, tuple) else None  # None: a Unix socket
        self._handler = self._guard._admit(self, self._address)
        if self._handler is None:
            transport.close()  # nothing was written, so this closes now
            return
        self._arm_head_deadline()
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._handler is None:
            return
        if not self._in_request and self._head_deadline is None:
            self._arm_head_deadline()  # the first byte of the next head on a kept-alive connection
        self._handler.data_received(data)

    def eof_received(self) -> None:
        if self._handler is not None:
            self._handler.eof_received()  # returns None, as ours does: the transport then closes

    def connection_lost(self, exc: Exception | None) -> None:
        for deadline in (self._head_deadline, self._write_deadline):
            if deadline is not None:
                deadline.cancel()
        if self._handler is not None:
            self._guard._release(self._handler, self._address)
            self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        # The transport's buffer is over its high-water mark: the client has to take some.
        assert self._handler is not None
        self._write_deadline = asyncio.get_running_loop().call_later(self._limits.write_timeout, self._stalled)
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        assert self._handler is not None
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        self._handler.resume_writing()

    def request_started(self) -> None:
        self._in_request = True
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def request_ended(self) -> None:
        # Idle until the next head's first byte; aiohttp's keep-alive timer closes it if none comes.
        self._in_request = False

    def _arm_head_deadline(self) -> None:
        self._head_deadline = asyncio.get_running_loop().call_later(self._limits.header_timeout, self._head_late)

    def _head_late(self) -> None:
        self._head_deadline = None
        self._guard.header_timeouts += 1
        self._drop("header_timeout", f"request head not complete in {self._limits.header_timeout:g} s; closed")

    def _stalled(self) -> None:
        self._write_deadline = None
        self._guard.write_stalls += 1
        self._drop("write_stall", f"response not read for {self._limits.write_timeout:g} s; dropped")

    def _drop(self, reason: str, what: str) -> None:
        if self._address is not None:
            self._guard._warn(reason, self._address, what)
        assert self._transport is not None
        self._transport.abort()  # not close(): that would wait to flush to this client


@dataclass(frozen=True)
class GuardedSite:
    """A guarded app being served: its runner, its guard's counters, where it listens."""

    runner: web.AppRunner
    guard: ConnectionGuard
    listener: asyncio.Server
    port: int  # the one bound, when 0 was asked for

    async def stop(self) -> None:
        """What web.run_app does on exit: stop listening, close idle connections, run
        on_shutdown, let requests in flight finish (up to shutdown_timeout), clean up."""
        if self.runner.server is None:  # stopped already
            return
        self.listener.close()
        await self.runner.cleanup()


async def start_guarded_site(app: web.Application, host: str | None, port: int, *,
                             limits: GuardLimits = DEFAULT_LIMITS, backlog: int = 128,
                             shutdown_timeout: float = 60.0, handle_signals: bool = False) -> GuardedSite:
    """Start `app` (its on_startup and cleanup_ctx run here) and listen on host:port with
    every connection through a ConnectionGuard. Port 0 picks a free port (GuardedSite.port)."""
    if body_deadline not in app.middlewares:
        log.warning("the app has no body_deadline middleware: request bodies have no deadline")
    app[LIMITS] = limits
    runner = web.AppRunner(app, keepalive_timeout=limits.keepalive_timeout, access_log_class=AccessLog,
                           shutdown_timeout=shutdown_timeout, handle_signals=handle_signals)
    await runner.setup()
    try:
        assert runner.server is not None
        guard = ConnectionGuard(runner.server, limits)
        listener = await asyncio.get_running_loop().create_server(guard, host, port, backlog=backlog)
    except BaseException:
        await runner.cleanup()
        raise
    return GuardedSite(runner, guard, listener, int(listener.sockets[0].getsockname()[1]))


def run_guarded(app: web.Application, *, host: str | None, port: int, limits: GuardLimits = DEFAULT_LIMITS,
                backlog: int = 128, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """`web.run_app` with the guard: serve until SIGINT or SIGTERM, then stop gracefully
    (asyncio.Runner cancels what is left and closes the loop). An error at startup, from
    on_startup or cleanup_ctx, is raised as run_app raises it."""

    async def serve() -> None:
        site = await start_guarded_site(app, host, port, limits=limits, backlog=backlog, handle_signals=True)
        try:
            await asyncio.Event().wait()  # until a signal: aiohttp raises GracefulExit, the Runner cancels us
        finally:
            await site.stop()

    given = None if loop is None else (lambda: loop)
    with suppress(web.GracefulExit, KeyboardInterrupt), asyncio.Runner(loop_factory=given) as runner:
        runner.run(serve())
