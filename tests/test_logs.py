"""Log lines: JSON with COORDINATOR_LOG_FORMAT=json (time, level, logger, event and the
ids in play), a request id on every request's lines and answer, and no personal data
(phones, emails, subscriber numbers, tokens) in any line of a whole demo run."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from coordinator import logs
from coordinator.app import create_app
from coordinator.commands.demo import run_demo
from coordinator.config.catalog import Catalog
from coordinator.config.settings import Settings

from .conftest import REPO
from .redis_server import free_port

# A mobile number, not a run of digits inside a hex id (a request id may hold 11 digits in a row).
PERSONAL = re.compile(r"\+?86\d{11}|(?<![0-9a-fA-F])1[3-9]\d{9}(?![0-9a-fA-F])|[\w.+-]+@[\w-]+\.[\w.]+")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    logs.configure(logging.INFO, "json", stream=out)
    try:
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_a_json_line_has_its_fields_and_the_ids_in_play(captured: io.StringIO) -> None:
    log = logging.getLogger("coordinator.test")
    with logs.log_ids(incident_id="INC-1", delivery_id="INC-1:1:p1:sms"):
        log.warning("delivery %s failed", "INC-1:1:p1:sms")
    log.info("after")
    first, second = lines(captured)
    assert {k: first[k] for k in ("level", "logger", "event", "incident_id", "delivery_id")} == {
        "level": "WARNING", "logger": "coordinator.test", "event": "delivery INC-1:1:p1:sms failed",
        "incident_id": "INC-1", "delivery_id": "INC-1:1:p1:sms"}
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", str(first["time"]))
    assert "incident_id" not in second


async def test_every_request_has_an_id_in_its_answer_and_its_lines(tmp_path: Path, catalog: Catalog,
                                                                   captured: io.StringIO) -> None:
    port = free_port()
    settings = Settings(port=port, store_url=f"sqlite:///{tmp_path}/l.db", subscriber_key="k", tick_seconds=0,
                        outbox_worker=False, no_channels=True)
    async with TestClient(TestServer(create_app(settings, catalog=catalog), port=port)) as client:
        given = await client.get("/livez", headers={"X-Request-Id": "edge-0123456789"})
        assert given.headers["X-Request-Id"] == "edge-0123456789"
        made = await client.get("/api/incidents")  # 401: an answer built from an exception carries it too
        assert made.status == 401 and re.fullmatch(r"[0-9a-f]{16}", made.headers["X-Request-Id"])
        odd = await client.get("/livez", headers={"X-Request-Id": "bad id\twith spaces"})
        assert odd.headers["X-Request-Id"] != "bad id\twith spaces"


async def test_a_whole_demo_run_logs_no_personal_data(tmp_path: Path, captured: io.StringIO) -> None:
    result = await run_demo(REPO, tmp_path / "demo.db", say=lambda line: None)
    assert result.ok
    text = captured.getvalue()
    assert len(text.splitlines()) > 50  # the run logged (incidents, deliveries, replies)
    assert [line for line in text.splitlines() if PERSONAL.search(line)] == []
    assert all(PERSONAL.search(x) for x in ("+8613900000001", "手机13900000001", "wang.li@example.com", "13800001234"))
    assert not PERSONAL.search('"request_id": "16001702249dda85"')
