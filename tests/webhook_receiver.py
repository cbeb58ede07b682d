"""A loopback webhook subscriber for the tests: a real aiohttp server that records every
request (headers and body exactly as received) and answers from a script of statuses,
or holds the request until released ("hang")."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from aiohttp import web
from standardwebhooks import Webhook

from coordinator.commands.sandboxed import free_port

# The Standard Webhooks specification's example secret form: whsec_ + base64 of 24+ bytes.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_c2Vjb25kLXN1YnNjcmliZXItc2VjcmV0LTEyMzQ1"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def signed_by(self, secret: str) -> bool:
        """The signature checks out with `secret`, recomputed for the request's own
        timestamp by the specification's reference library (its verify() would also
        judge the timestamp against the real clock)."""
        at = datetime.fromtimestamp(int(self.headers["webhook-timestamp"]), timezone.utc)
        return Webhook(secret).sign(self.id, at, self.body) in self.headers["webhook-signature"].split(" ")


@dataclass
class Receiver:
    """`answer(request number for this event id, 1-based) -> status` ("hang": never)."""

    answer: Callable[[int], int | str] = lambda n: 200
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=must-not-be-logged"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        event_id = request.headers.get("webhook-id", "")
        n = 1 + sum(1 for r in self.received if r.id == event_id)
        status = self.answer(n)
        if status == "hang":
            self.received.append(Received(dict(request.headers), body, 0))
            self.hanging += 1
            await self.released.wait()
            return web.Response(status=200)
        assert isinstance(status, int)
        self.received.append(Received(dict(request.headers), body, status))
        headers = {"Retry-After": "1"} if status == 429 else {}
        return web.Response(status=status, headers=headers)

    async def start(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self.released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def delivered(self) -> dict[str, Received]:
        """Each event id answered 2xx, with the request that got it."""
        return {r.id: r for r in self.received if 200 <= r.status < 300}

    async def wait_for(self, done: Callable[[], bool], timeout: float = 60.0) -> None:
        """Until `done()` (a bound on a hang, not a timing assertion)."""
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.05)
