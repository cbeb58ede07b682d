"""The access log through a real server: one line per request, webhooks that went well
only at DEBUG, and never an ack link's token."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web

from coordinator.web.accesslog import AccessLog, logged_path


def test_ack_tokens_are_not_logged() -> None:
    assert logged_path("/ack/eyJpIjoiSU5DLTEi.c2ln") == "/ack/<token>"
    assert logged_path("/api/incidents/INC-1") == "/api/incidents/INC-1"


async def test_one_line_per_request_webhooks_quiet(caplog: pytest.LogCaptureFixture) -> None:
    async def fine(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def refused(request: web.Request) -> web.Response:
        return web.Response(status=403)

    app = web.Application()
    for path in ("/hooks/twilio/status", "/ack/{token}", "/api/x"):
        app.router.add_route("*", path, fine)
    app.router.add_post("/hooks/twilio/bad", refused)
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    runner = web.AppRunner(app, access_log_class=AccessLog)  # as coordinator/web/guard.py serves
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/hooks/twilio/status", "/ack/secret-token-123", "/api/x", "/hooks/twilio/bad"):
                async with session.post(f"http://127.0.0.1:{port}{path}") as resp:
                    await resp.read()
    finally:
        await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 3 and not any("secret-token" in line for line in lines)
    assert '"POST /ack/<token>" 204' in lines[0] and '"POST /hooks/twilio/bad" 403' in lines[2]
