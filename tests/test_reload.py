"""Reloading the config files into a running service: a valid change reaches intake,
the detectors' minimums, the pipeline and the drills' schedule; an invalid one is
refused with every problem named and changes nothing; `serve` reloads on SIGHUP."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from coordinator.app import build_services, reload_catalog
from coordinator.config.catalog import load_catalog
from coordinator.clock import ManualClock
from coordinator.config.settings import Settings
from coordinator.store import Store

from .test_cli import free_port, wait_until_serving

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    root = tmp_path / "config"
    shutil.copytree(FIXTURES / "good", root)
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def complaint(cid: str, category: str) -> dict[str, str]:
    return {"id": cid, "received_at": T0.isoformat(), "channel": "hotline", "category": category,
            "region": "hangzhou"}


async def test_a_valid_change_reaches_every_part(store: Store, config: Path) -> None:
    settings = Settings(config_dir=config, subscriber_key="k", tick_seconds=0)
    services = await build_services(settings, store=store, catalog=load_catalog(config), clock=ManualClock(T0))
    refused = await services.intake.submit([(1, complaint("a", "slicing"))])
    assert refused.rejected and refused.rejected[0].field == "category"
    assert services.monitor.config_for("outage/hangzhou").min_count == 10

    (config / "categories.yaml").write_text("categories:\n  - {id: slicing, name: 5G切片业务}\n", encoding="utf-8")
    edit(config / "playbooks" / "outage.yaml", "min_count: 10", "min_count: 25")
    edit(config / "playbooks" / "outage.yaml", "title: 移动网络故障", "title: 移动网络大面积故障")
    assert await reload_catalog(services)

    accepted = await services.intake.submit([(1, complaint("b", "slicing"))])
    assert accepted.accepted == 1
    assert services.monitor.config_for("outage/hangzhou").min_count == 25
    assert services.pipeline.catalog().playbooks["outage"].title == "移动网络大面积故障"
    assert services.drills.catalog() is services.catalog is services.messages.catalog()


async def test_an_invalid_change_is_refused_and_changes_nothing(
    store: Store, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(config_dir=config, subscriber_key="k", tick_seconds=0)
    services = await build_services(settings, store=store, catalog=load_catalog(config), clock=ManualClock(T0))
    before = services.catalog
    edit(config / "drills" / "weekly.yaml", "playbook: outage", "playbook: nope")
    edit(config / "playbooks" / "outage.yaml", "min_count: 10", "min_count: lots")
    with caplog.at_level(logging.ERROR, logger="coordinator.app"):
        assert not await reload_catalog(services)
    messages = [r.getMessage() for r in caplog.records]
    assert any("drills/weekly.yaml:6: scenario.playbook: unknown playbook 'nope'" in m for m in messages)
    assert any("playbooks/outage.yaml" in m and "min_count" in m for m in messages)
    assert any(m.startswith("reload refused: ") for m in messages)
    assert services.catalog is before and services.pipeline.catalog() is before
    assert services.monitor.config_for("outage/hangzhou").min_count == 10


async def test_reload_reschedules_the_drills(store: Store, config: Path) -> None:
    settings = Settings(config_dir=config, subscriber_key="k", tick_seconds=60)
    services = await build_services(settings, store=store, catalog=load_catalog(config), clock=ManualClock(T0))
    services.ticks.start()
    try:
        assert set(services.ticks.jobs()) == {"tick", "drill:weekly"}
        weekly = (config / "drills" / "weekly.yaml").read_text(encoding="utf-8")
        (config / "drills" / "daily.yaml").write_text(
            weekly.replace("id: weekly", "id: daily").replace('"0 10 * * wed"', '"30 9 * * *"'), encoding="utf-8"
        )
        (config / "drills" / "weekly.yaml").unlink()
        assert await reload_catalog(services)
        jobs = services.ticks.jobs()
        assert set(jobs) == {"tick", "drill:daily"}
        assert str(jobs["drill:daily"].trigger).startswith("cron[")
        assert "minute='30'" in str(jobs["drill:daily"].trigger)
    finally:
        services.ticks.stop()


def test_serve_reloads_on_sighup(tmp_path: Path, config: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator.commands.cli", "serve", "--port", str(port), "--no-channels", "--config", str(config),
         "--store", f"sqlite:///{tmp_path}/serve.db"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 30
        while not any(text in line for line in list(lines)):
            assert proc.poll() is None and time.monotonic() < deadline, f"no {text!r} in:\n{''.join(lines)}"
            time.sleep(0.05)

    try:
        wait_until_serving(proc, port, lambda: "".join(lines))  # and so the SIGHUP handler is in place
        edit(config / "drills" / "weekly.yaml", "playbook: outage", "playbook: nope")
        proc.send_signal(signal.SIGHUP)
        wait_for("reload refused: 1 problem(s)")
        assert any("drills/weekly.yaml:6: scenario.playbook: unknown playbook 'nope'" in line for line in lines)
        edit(config / "drills" / "weekly.yaml", "playbook: nope", "playbook: outage")
        proc.send_signal(signal.SIGHUP)
        wait_for("config reloaded from")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200  # served throughout
    finally:
        proc.terminate()
        proc.wait(timeout=10)
