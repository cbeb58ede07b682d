"""A fault-injecting reverse proxy for tests and benchmarks: it stands between an HTTP
client (the service's real twilio client) and its upstream (the Twilio sandbox) and, on
the requests it picks, does what a struggling provider or a bad network does. Every
other request is passed through unharmed.

    too_many_requests  429 with Twilio's error body (code 20429); nothing forwarded
    server_error       500 (20500); nothing forwarded
    unavailable        503 (20503); nothing forwarded
    reset_before       the client's connection is reset (RST); nothing forwarded
    reset_after        forwarded (a message IS created), then the connection reset
    hold               forwarded (created), the answer held `hold_seconds` (past the
                       client's timeout), then sent if the client is still there

`down` is an outage: every request, picked or not, is read and never forwarded nor
answered, until the outage ends or the proxy stops; then its connection is reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL


class Fault(StrEnum):
    too_many_requests = "too_many_requests"
    server_error = "server_error"
    unavailable = "unavailable"
    reset_before = "reset_before"
    reset_after = "reset_after"
    hold = "hold"
    down = "down"
    """Not drawn: a request that arrived during an outage."""


# The kinds a request can draw, in the order the draw lays them out on [0, 1).
DRAWN = (Fault.too_many_requests, Fault.server_error, Fault.unavailable, Fault.reset_before,
         Fault.reset_after, Fault.hold)
# Twilio's error answers, given before anything is created: (HTTP status, error code, message).
ERROR_ANSWERS: dict[Fault, tuple[int, int, str]] = {
    Fault.too_many_requests: (429, 20429, "Too Many Requests"),
    Fault.server_error: (500, 20500, "Internal Server Error"),
    Fault.unavailable: (503, 20503, "Service Unavailable"),
}
# They describe one hop, not the request (RFC 9110 7.6.1); Content-Length is recomputed.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
                        "host", "content-length"})
# aiohttp tells a handler that its client left only by cancelling it (handler_cancellation),
# which would also cancel a forward under way, and a provider does not stop creating a
# message because the client hung up. So a held request looks for its client this often.
CLIENT_CHECK_SECONDS = 0.02
# l_onoff=1, l_linger=0: closing the socket sends RST instead of FIN.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class FaultRates:
    """The share of picked requests given each fault: one seeded draw per request, so a
    request gets at most one fault and none with probability 1 - the sum."""

    too_many_requests: float = 0.0
    server_error: float = 0.0
    unavailable: float = 0.0
    reset_before: float = 0.0
    reset_after: float = 0.0
    hold: float = 0.0
    hold_seconds: float = 30.0
    """How long a `hold` keeps the answer: longer than the client's timeout."""

    def __post_init__(self) -> None:
        rates = [getattr(self, kind.value) for kind in DRAWN]
        if not all(math.isfinite(rate) and rate >= 0 for rate in rates):
            raise ValueError(f"fault rates must be non-negative numbers: {rates}")
        if math.fsum(rates) > 1 + 1e-9:  # six shares of 1/6 may add up to 1.0000000000000002
            raise ValueError(f"fault rates add up to {math.fsum(rates):g}, more than 1")
        if not (math.isfinite(self.hold_seconds) and self.hold_seconds > 0):
            raise ValueError("hold_seconds must be positive")


def draw_fault(rates: FaultRates, roll: float) -> Fault | None:
    """The fault for a uniform `roll` in [0, 1): each kind owns a slice of its rate's
    width, laid out in DRAWN order; past them all, no fault."""
    for kind in DRAWN:
        rate: float = getattr(rates, kind.value)
        if roll < rate:
            return kind
        roll -= rate
    return None


def creates_message(request: web.BaseRequest) -> bool:
    """Twilio's "create message": the request whose faults matter. The list and fetch
    look-ups the channel makes after an unclear create pass through."""
    return request.method == "POST" and request.path.endswith("/Messages.json")


class FaultProxy:
    """Serves on `base_url` (127.0.0.1, a free port) once started, forwarding to
    `upstream` (a base URL; its path, if any, prefixes every request's).

    `faults` may be replaced at any time; the next request draws from the new rates.
    `picks` says which requests draw at all. `injected` counts the faults per kind,
    `forwarded` the requests the upstream answered.
    """

    def __init__(self, upstream: str, faults: FaultRates = FaultRates(), *, seed: int = 0,
                 picks: Callable[[web.BaseRequest], bool] = creates_message) -> None:
        self.faults = faults
        self.injected: Counter[Fault] = Counter()
        self.forwarded = 0
        self._upstream = upstream.rstrip("/")
        self._picks = picks
        self._rng = random.Random(seed)
        self._down = False
        self._outage_over = asyncio.Event()
        self._outage_over.set()
        self._stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the fault proxy is not started")
        return self._base_url

    @property
    def down(self) -> bool:
        """True during an outage (see the module): a request arriving meanwhile gets no
        answer, so the client meets its own timeout. Setting it False ends the outage, and
        the requests still held are reset, as they never reached the provider; requests
        already past this check when the outage began go on as drawn."""
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        self._down = value
        if value:
            self._outage_over.clear()
        else:
            self._outage_over.set()

    async def start(self) -> None:
        self._stopping.clear()  # a proxy stopped may be started again
        # Bodies pass as they come (compressed or not); cookies are the client's business.
        self._session = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                                              connector=aiohttp.TCPConnector(limit=0))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Held requests are released by stop() first, so a short grace period suffices.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self._base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop serving: held answers are sent at once, outage requests reset."""
        self._stopping.set()
        self._outage_over.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self._runner = self._session = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._down:
            self.injected[Fault.down] += 1
            await _wait(request, self._outage_over, None)
            return _reset(request)
        faults = self.faults  # one request, one set of rates, even if replaced meanwhile
        # Drawn before the body is read, so the draws follow the order requests arrived in.
        fault = draw_fault(faults, self._rng.random()) if self._picks(request) else None
        if fault is not None:
            self.injected[fault] += 1
        body = await request.read()
        if fault is not None and fault in ERROR_ANSWERS:
            status, code, message = ERROR_ANSWERS[fault]
            return web.json_response({"code": code, "message": message, "status": status,
                                      "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)
        if fault is Fault.reset_before:
            return _reset(request)
        answer = await self._forward(request, body)
        if fault is Fault.reset_after:
            return _reset(request)
        if fault is Fault.hold:
            # If the client has left meanwhile, writing the answer fails and aiohttp drops it quietly.
            await _wait(request, self._stopping, faults.hold_seconds)
        return answer

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        """The upstream's answer to the same request, or 502 if it gave none, as a gateway."""
        assert self._session is not None
        url = URL(self._upstream + request.raw_path, encoded=True)
        try:
            async with self._session.request(request.method, url, headers=_end_to_end(request.headers),
                                             data=body or None, allow_redirects=False) as upstream:
                content = await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.Response(status=502, text=f"the upstream did not answer: {exc!r}")
        self.forwarded += 1
        return web.Response(status=upstream.status, reason=upstream.reason, body=content,
                            headers=_end_to_end(upstream.headers))


def _end_to_end(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """`headers` without the hop-by-hop ones, including any the Connection header names."""
    named = {token.strip().lower() for value in headers.getall("Connection", []) for token in value.split(",")}
    return CIMultiDict((name, value) for name, value in headers.items()
                       if name.lower() not in HOP_BY_HOP and name.lower() not in named)


async def _wait(request: web.BaseRequest, release: asyncio.Event, seconds: float | None) -> None:
    """Until `release` is set, `seconds` have passed (None: no limit) or the client has left."""
    loop = asyncio.get_running_loop()
    deadline = math.inf if seconds is None else loop.time() + seconds
    while not release.is_set() and _connected(request):
        left = deadline - loop.time()
        if left <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), min(left, CLIENT_CHECK_SECONDS))


def _connected(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


def _reset(request: web.BaseRequest) -> web.StreamResponse:
    """Reset the client's connection: it sees ECONNRESET where the answer should be.

    The answer returned is never written: aiohttp's finish_response meets the closing
    transport, takes the ConnectionError as a client gone, and ends the connection
    quietly (raising instead would be logged as a 500 or take the task for cancelled)."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the client: nothing to reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        transport.abort()
    return web.Response()
