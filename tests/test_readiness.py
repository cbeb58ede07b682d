"""Probes for an orchestrator: /livez answers while the process runs; /readyz says 503,
with each problem, until the store answers, a config is loaded and every channel a
playbook needs is configured. /healthz stays as it was."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from coordinator.app import create_app
from coordinator.config.catalog import Catalog
from coordinator.config.settings import Settings

from .redis_server import free_port


async def probe(tmp_path: Path, catalog: Catalog, **settings: object) -> dict[str, tuple[int, dict[str, object]]]:
    port = free_port()
    app = create_app(Settings(port=port, public_url=f"http://127.0.0.1:{port}", store_url=f"sqlite:///{tmp_path}/p.db",
                              subscriber_key="k", tick_seconds=0, outbox_worker=False, **settings),  # type: ignore[arg-type]
                     catalog=catalog)
    async with TestClient(TestServer(app, port=port)) as client:
        answers = {}
        for path in ("/livez", "/readyz", "/healthz"):
            resp = await client.get(path)
            answers[path] = (resp.status, await resp.json())
        return answers


async def test_without_channels_alive_but_not_ready(tmp_path: Path, catalog: Catalog) -> None:
    got = await probe(tmp_path, catalog, no_channels=True)
    assert got["/livez"] == (200, {"status": "alive"})
    status, body = got["/readyz"]
    assert status == 503 and body["status"] == "not_ready"
    assert any("playbook broadband-outage needs email and sms" in p for p in body["problems"])  # type: ignore[union-attr]
    assert got["/healthz"][0] == 200 and got["/healthz"][1]["status"] == "degraded"


async def test_with_every_channel_ready(tmp_path: Path, catalog: Catalog) -> None:
    got = await probe(tmp_path, catalog, sandbox=True)
    assert got["/readyz"] == (200, {"status": "ready", "problems": []})
    assert got["/livez"][0] == 200 and got["/healthz"][1]["status"] == "ok"
