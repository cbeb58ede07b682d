"""Installing as ops expect: the systemd unit (deploy/coordinator.service) has what the
install guide promises (an environment file, a reload by SIGHUP, restarts on failure, a
read-only system but for the store's folder) and passes `systemd-analyze verify` with no
warning where systemd is installed; the example environment file lists every setting the
code reads, and nothing else."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coordinator.config.settings import Settings

from .conftest import REPO

UNIT = REPO / "deploy" / "coordinator.service"
ENV_EXAMPLE = REPO / "deploy" / "coordinator.env.example"


def unit_keys(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values, as systemd reads a unit (repeated keys add up)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"not a key=value in a section: {raw!r}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_unit_runs_serve_with_an_env_file_reload_restarts_and_hardening() -> None:
    unit = unit_keys(UNIT.read_text(encoding="utf-8"))
    service = {k: v[-1] for k, v in unit["Service"].items()}
    assert service["Type"] in ("simple", "notify")
    assert service["User"] == "coordinator" and service["EnvironmentFile"] == "/etc/coordinator/coordinator.env"
    command = service["ExecStart"].split()
    assert command[0].endswith("/coordinator") and command[1] == "serve"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # app._reload_on_sighup
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/coordinator" == "/var/lib/" + service["StateDirectory"]
    assert service["WorkingDirectory"] == "/var/lib/coordinator"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    # The store the example environment file names is in the one writable folder.
    store = re.search(r"^COORDINATOR_STORE=sqlite:///(/\S+)$", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M)
    assert store is not None and store.group(1).startswith(service["ReadWritePaths"] + "/")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed "
                    "(the unit's keys are checked above)")
def test_systemd_analyze_verifies_the_unit_without_a_warning(tmp_path: Path) -> None:
    """Verified with ExecStart pointing at this venv's `coordinator` (systemd checks that
    the command exists)."""
    here = Path(sys.executable).parent / "coordinator"
    text = UNIT.read_text(encoding="utf-8").replace("/opt/coordinator/venv/bin/coordinator", str(here))
    (tmp_path / "coordinator.service").write_text(text, encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "coordinator.service")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr
    # A misspelt key is only a warning to systemd: this test treats it as the failure it is.
    (tmp_path / "bad.service").write_text(text.replace("Restart=on-failure", "Restartt=on-failure"), "utf-8")
    bad = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "bad.service")],
                         capture_output=True, text=True, timeout=60)
    assert "Restartt" in bad.stdout + bad.stderr


class _Recording(dict[str, str]):
    """An empty environment that remembers every variable asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def settings_the_code_reads() -> set[str]:
    """Every variable Settings.from_env asks for, and every one the package reads from
    os.environ itself (the CLI's, the log format, the event loop)."""
    env = _Recording()
    Settings.from_env(env)
    names = set(env.asked)
    pattern = re.compile(r"""environ(?:\.get)?[\[(]\s*["']([A-Z][A-Z0-9_]+)["']""")
    for path in (REPO / "coordinator").rglob("*.py"):
        names |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return names


def test_the_example_env_file_lists_every_setting_and_no_other() -> None:
    listed = re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M)
    assert len(listed) == len(set(listed)), "a setting listed twice"
    read = settings_the_code_reads()
    assert {"COORDINATOR_STORE", "COORDINATOR_LOG_FORMAT", "COORDINATOR_URL", "SMTP_HOST"} <= read
    assert not read - set(listed), f"settings missing from {ENV_EXAMPLE.name}: {sorted(read - set(listed))}"
    assert not set(listed) - read, f"unknown settings in {ENV_EXAMPLE.name}: {sorted(set(listed) - read)}"


def test_the_example_env_file_as_is_gives_valid_settings() -> None:
    """Its uncommented lines (empty values are unset) are settings the service accepts."""
    env = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M))
    settings = Settings.from_env(env)
    assert str(settings.config_dir) == "/etc/coordinator" and settings.admin_token is None
    assert settings.store_url == "sqlite:////var/lib/coordinator/coordinator.db"
