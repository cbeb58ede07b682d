"""A fault-injecting HTTP proxy for the fault tests: it stands between the service's real
twilio client and the sandbox (or any HTTP API) and, on the requests it picks, does what
a bad network or a struggling provider does. Every other request is passed through.

    too_many_requests   429 with Twilio's error body (20429); nothing forwarded
    server_error        500 (20500); nothing forwarded
    unavailable         503 (20503); nothing forwarded
    reset_before        the connection is dropped; nothing forwarded
    reset_after         forwarded (the message IS created), then the connection dropped
    hold                forwarded (created), the answer held `hold_seconds` (past the
                        client's timeout), then sent if the client is still there
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass, fields
from typing import Callable

import aiohttp
from aiohttp import web

# Not passed on: they describe one hop, not the request.
_HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade",
                  "proxy-connection", "te", "trailer"})
_ERRORS = {"too_many_requests": (429, 20429, "Too Many Requests"), "server_error": (500, 20500, "Internal Server Error"),
           "unavailable": (503, 20503, "Service Unavailable")}


@dataclass(frozen=True)
class ProxyFaults:
    """Shares of the picked requests given each fault, one seeded draw per request."""

    too_many_requests: float = 0.0
    server_error: float = 0.0
    unavailable: float = 0.0
    reset_before: float = 0.0
    reset_after: float = 0.0
    hold: float = 0.0
    hold_seconds: float = 30.0

    def __post_init__(self) -> None:
        rates = [getattr(self, f.name) for f in fields(self) if f.name != "hold_seconds"]
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be non-negative and add up to at most 1")
        if self.hold_seconds <= 0:
            raise ValueError("hold_seconds must be positive")

    def draw(self, rng: random.Random) -> str | None:
        roll = rng.random()
        for f in fields(self):
            if f.name == "hold_seconds":
                continue
            rate = getattr(self, f.name)
            if roll < rate:
                return f.name
            roll -= rate
        return None


def creates_a_message(request: web.Request) -> bool:
    """Twilio's Messages create: the request whose faults matter (a look-up passes)."""
    return request.method == "POST" and request.path.endswith("/Messages.json")


class FaultProxy:
    def __init__(self, upstream: str, faults: ProxyFaults, *, seed: int = 1,
                 picks: Callable[[web.Request], bool] = creates_a_message) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults
        self.picks = picks
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        self._rng = random.Random(seed)
        self._stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._base_url = ""

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("start the proxy first")
        return self._base_url

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # the port picked
        self._base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._stopping.set()  # held answers give up at once
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> "FaultProxy":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fault = self.faults.draw(self._rng) if self.picks(request) else None
        if fault is not None:
            self.injected[fault] += 1
        if fault in _ERRORS:
            status, code, message = _ERRORS[fault]
            return web.json_response({"code": code, "message": message, "status": status,
                                      "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)
        if fault == "reset_before":
            return self._drop(request)
        answer = await self._forward(request, body)
        if fault == "reset_after":
            return self._drop(request)
        if fault == "hold":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.faults.hold_seconds)
        return answer

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body) as upstream:
            content = await upstream.read()
            self.forwarded += 1
            passed = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            return web.Response(status=upstream.status, body=content, headers=passed)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        """Abort the client's connection: it sees a reset, not an answer."""
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # aiohttp ends the handler quietly; nothing is written
