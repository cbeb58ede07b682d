"""The `coordinator` command as a user runs it: serve starts and answers, a bad config
stops it before it listens, bad settings are named."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from coordinator.settings import Settings, SettingsError

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_starts_and_answers_healthz(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "serve", "--port", str(port),
         "--config", str(FIXTURES / "good"), "--store", f"sqlite:///{tmp_path}/serve.db"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "serve did not answer within 20 s"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert (tmp_path / "serve.db").exists()


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "config"
    import shutil

    shutil.copytree(FIXTURES / "good", config)
    (config / "drills" / "weekly.yaml").write_text(
        (config / "drills" / "weekly.yaml").read_text().replace("playbook: outage", "playbook: nope")
    )
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "serve", "--port", str(free_port()), "--config", str(config),
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


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COORDINATOR_PORT": "eighty"}, "COORDINATOR_PORT='eighty' is not a valid int"),
        ({"COORDINATOR_STORE": "postgres://x"}, "is neither sqlite:///PATH nor redis://HOST:PORT/DB"),
        ({"COORDINATOR_BUCKET_MINUTES": "0"}, "bucket_minutes must be between 1 and 1440"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace("/", "/")):
        Settings.from_env(env)
