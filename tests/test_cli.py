"""The `coordinator` command as a user runs it: serve starts and answers, a bad config
stops it before it listens, bad settings are named."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from coordinator.errors import SettingsError
from coordinator.commands.sandboxed import free_port
from coordinator.config.settings import Settings

from .conftest import ADMIN_TOKEN

FIXTURES = Path(__file__).parent / "fixtures"


def wait_until_serving(proc: subprocess.Popen[str], port: int, output: Callable[[], str]) -> None:
    """Until `serve` answers /healthz with 200 (start-up is over); fails with its
    `output` if it exits first or takes over 20 s."""
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                assert resp.status == 200
                return
        except OSError:
            assert proc.poll() is None, output()
            assert time.monotonic() < deadline, "serve did not answer within 20 s"
            time.sleep(0.1)


def test_serve_refuses_to_start_with_no_channel(tmp_path: Path) -> None:
    """Seen: `serve` without Twilio, SMTP or --sandbox logged only "serving on ..." and
    every delivery of the next incident failed."""
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.commands.cli", "serve", "--port", str(free_port()),
         "--config", str(FIXTURES / "good"), "--store", f"sqlite:///{tmp_path}/serve.db"],
        capture_output=True, text=True, timeout=30, env={k: v for k, v in os.environ.items()
                                                         if not k.startswith(("TWILIO_", "SMTP_", "COORDINATOR_"))},
    )
    assert done.returncode == 1
    assert "no delivery channel is configured" in done.stderr and "--no-channels" in done.stderr


def test_serve_starts_and_answers_healthz(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator.commands.cli", "serve", "--port", str(port), "--no-channels",
         "--config", str(FIXTURES / "good"), "--store", f"sqlite:///{tmp_path}/serve.db"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until_serving(proc, port, lambda: proc.stdout.read() if proc.stdout else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            health = json.loads(resp.read())
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert (tmp_path / "serve.db").exists()
    # it says so at start and on /healthz: messages those playbooks send cannot go out
    assert health["status"] == "degraded" and health["channels"] == {"sms": "missing", "email": "missing",
                                                                  "dingtalk": "missing", "wecom": "missing"}
    assert health["missing_channels"]["outage"] == ["email", "sms"]
    assert "delivery channels: none" in out and "playbook outage needs email and sms" in out


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "config"
    import shutil

    shutil.copytree(FIXTURES / "good", config)
    (config / "drills" / "weekly.yaml").write_text(
        (config / "drills" / "weekly.yaml").read_text().replace("playbook: outage", "playbook: nope")
    )
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.commands.cli", "serve", "--port", str(free_port()), "--config", str(config),
         "--store", f"sqlite:///{tmp_path}/x.db"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 1
    assert "drills/weekly.yaml:6: scenario.playbook: unknown playbook 'nope'" in done.stderr


def test_settings_from_env() -> None:
    settings = Settings.from_env({"COORDINATOR_PORT": "9000", "COORDINATOR_STORE": "redis://127.0.0.1:6379/1",
                                  "COORDINATOR_SUBSCRIBER_KEY": "s3cret"})
    assert settings.port == 9000 and settings.store_url.startswith("redis://")
    assert "s3cret" not in repr(settings)
    assert Settings.from_env({}, port=7000).port == 7000
    concurrency = Settings.from_env({"COORDINATOR_SMS_CONCURRENCY": "250", "COORDINATOR_EMAIL_CONCURRENCY": "20"})
    assert (concurrency.sms_concurrency, concurrency.email_concurrency) == (250, 20)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COORDINATOR_PORT": "eighty"}, "COORDINATOR_PORT='eighty' is not a valid int"),
        ({"COORDINATOR_STORE": "postgres://x"}, "is neither sqlite:///PATH nor redis://HOST:PORT/DB"),
        ({"COORDINATOR_BUCKET_MINUTES": "0"}, "bucket_minutes must be between 1 and 1440"),
        ({"COORDINATOR_SMS_CONCURRENCY": "0"}, "COORDINATOR_SMS_CONCURRENCY must be at least 1"),
        ({"COORDINATOR_EMAIL_CONCURRENCY": "many"}, "COORDINATOR_EMAIL_CONCURRENCY='many' is not a valid int"),
        ({"COORDINATOR_SMS_RATE": "-5"}, "COORDINATOR_SMS_RATE must be 0 (no limit) or more"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


async def test_trigger_command_against_a_running_service(aiohttp_server: Any, capsys: Any, tmp_path: Path) -> None:
    import asyncio
    from datetime import datetime, timezone

    from coordinator.app import create_app
    from coordinator.config.catalog import load_catalog
    from coordinator.commands.cli import main
    from coordinator.clock import ManualClock

    settings = Settings(store_url=f"sqlite:///{tmp_path}/t.db", subscriber_key="k", tick_seconds=0,
                        admin_token=ADMIN_TOKEN)
    app = create_app(settings, clock=ManualClock(datetime(2026, 11, 24, 2, tzinfo=timezone.utc)),
                     catalog=load_catalog(FIXTURES / "good"))
    server = await aiohttp_server(app)
    url = str(server.make_url(""))
    code = await asyncio.to_thread(main, ["trigger", "outage", "--region", "hangzhou", "--param", "cause=基站断电",
                                          "--by", "p1", "--url", url, "--token", "wrong-token"])
    assert code == 1 and "bearer token is not valid" in capsys.readouterr().err
    code = await asyncio.to_thread(main, ["trigger", "outage", "--region", "hangzhou", "--param", "cause=基站断电",
                                          "--by", "p1", "--url", url, "--token", ADMIN_TOKEN])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "opened: 移动网络故障 [major] region hangzhou" in out and "组长 (leader): p1" in out
    code = await asyncio.to_thread(main, ["trigger", "outage", "--region", "hangzhou", "--param", "why=x", "--url", url,
                                          "--token", ADMIN_TOKEN])
    err = capsys.readouterr().err
    assert code == 1 and "unknown parameter 'why'" in err
    assert await asyncio.to_thread(main, ["trigger", "outage", "--region", "hangzhou", "--param", "novalue",
                                          "--url", url]) == 2
