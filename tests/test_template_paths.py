"""A playbook's templates are read from templates/ and nowhere else: a path that leaves it
(`..`, an absolute path, a symlink pointing out) is refused by `coordinator check` at the
playbook's line, and the renderer refuses it too, so a trigger on a tree changed since
the check answers a clear error and opens no incident."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from coordinator.app import build_services, create_app
from coordinator.config.catalog import check_config, load_catalog
from coordinator.clock import ManualClock
from coordinator.errors import TemplateOutside
from coordinator.models import Surge
from coordinator.scripts import make_environment
from coordinator.config.settings import Settings
from coordinator.store import Store
from coordinator.web.state import SERVICES

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

GOOD = Path(__file__).parent / "fixtures" / "good"
SMS_LINE = 27  # playbooks/outage.yaml: script.templates.sms
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


def config(tmp_path: Path, sms: str | None = None) -> Path:
    """The good fixture under tmp_path/config, its playbook's SMS template renamed to
    `sms`; tmp_path/secret.txt.j2 lies outside it."""
    root = tmp_path / "config"
    shutil.copytree(GOOD, root)
    (tmp_path / "secret.txt.j2").write_text("root:x:0:0:secret\n", encoding="utf-8")
    if sms is not None:
        playbook = root / "playbooks" / "outage.yaml"
        text = playbook.read_text(encoding="utf-8")
        assert text.splitlines()[SMS_LINE - 1] == "    sms: outage/sms.txt.j2"
        playbook.write_text(text.replace("    sms: outage/sms.txt.j2", f"    sms: {sms}", 1), encoding="utf-8")
    return root


def outside(name: str) -> str:
    return f"playbooks/outage.yaml:{SMS_LINE}: script.templates.sms: template '{name}' is outside templates/"


@pytest.mark.parametrize("name", ["../../secret.txt.j2", "../../../../../../../../etc/passwd", "/etc/passwd",
                                  "outage/../../../secret.txt.j2"])
def test_a_path_leaving_templates_is_refused_at_its_playbook_line(tmp_path: Path, name: str) -> None:
    assert check_config(config(tmp_path, name)) == [outside(name)]


def test_a_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    root = config(tmp_path, "outage/leak.txt.j2")
    (root / "templates" / "outage" / "leak.txt.j2").symlink_to(tmp_path / "secret.txt.j2")
    problems = check_config(root)
    assert outside("outage/leak.txt.j2") in problems
    # the file itself is not read as a template, and says where it leads
    assert "templates/outage/leak.txt.j2:1: leads outside templates/ by a symlink (not read)" in problems


def test_a_symlinked_folder_pointing_outside_is_refused(tmp_path: Path) -> None:
    root = config(tmp_path, "shared/sms.txt.j2")
    (tmp_path / "shared").mkdir()
    shutil.copy(root / "templates" / "outage" / "sms.txt.j2", tmp_path / "shared" / "sms.txt.j2")
    (root / "templates" / "shared").symlink_to(tmp_path / "shared")
    assert outside("shared/sms.txt.j2") in check_config(root)


def test_nested_paths_and_links_inside_templates_are_fine(tmp_path: Path) -> None:
    root = config(tmp_path, "outage/sms/short.txt.j2")
    (root / "templates" / "outage" / "sms").mkdir()
    shutil.copy(root / "templates" / "outage" / "sms.txt.j2", root / "templates" / "outage" / "sms" / "short.txt.j2")
    (root / "templates" / "outage" / "alias.txt.j2").symlink_to(root / "templates" / "common" / "update_sms.txt.j2")
    assert check_config(root) == []


def test_the_renderer_refuses_to_read_outside(tmp_path: Path) -> None:
    root = config(tmp_path)
    (root / "templates" / "leak.txt.j2").symlink_to(tmp_path / "secret.txt.j2")
    env = make_environment(root / "templates")
    assert env.get_template("outage/sms.txt.j2") is not None
    for name in ("leak.txt.j2", "../secret.txt.j2", "/etc/passwd"):
        with pytest.raises(TemplateOutside, match="outside templates/"):
            env.get_template(name)


async def test_a_trigger_on_a_template_swapped_since_the_check_opens_nothing(tmp_path: Path) -> None:
    root = config(tmp_path)
    catalog = load_catalog(root)  # checked and loaded while the tree was sound
    sms = root / "templates" / "outage" / "sms.txt.j2"
    sms.unlink()
    sms.symlink_to(tmp_path / "secret.txt.j2")
    settings = Settings(store_url=f"sqlite:///{tmp_path}/t.db", subscriber_key="k", tick_seconds=0,
                        admin_token=ADMIN_TOKEN, outbox_worker=False)
    async with TestClient(TestServer(create_app(settings, clock=ManualClock(T0), catalog=catalog))) as client:
        resp = await client.post("/api/incidents", json={"playbook": "outage", "region": "hangzhou"},
                                 headers=ADMIN_HEADERS)
        assert resp.status == 409, await resp.text()
        message = (await resp.json())["error"]["message"]
        assert "outage/sms.txt.j2" in message and "outside templates/" in message
        assert await client.app[SERVICES].store.list_incidents() == []  # type: ignore[index]


async def test_a_surge_on_such_a_playbook_is_recorded_and_opens_nothing(tmp_path: Path, store: Store) -> None:
    root = config(tmp_path)
    catalog = load_catalog(root)
    sms = root / "templates" / "outage" / "sms.txt.j2"
    sms.unlink()
    sms.symlink_to(tmp_path / "secret.txt.j2")
    flow = (await build_services(Settings(subscriber_key="k", tick_seconds=0), store=store, catalog=catalog,
                                 clock=ManualClock(T0))).pipeline
    surge = Surge(key="outage/hangzhou", category="outage", region="hangzhou", onset=T0 - timedelta(minutes=15),
                  detected_at=T0, observed=40, expected=6.7, ratio=6.0, score=0.99)
    assert await flow.on_surge(surge) is None
    assert await store.list_incidents() == []
    assert [s.key for s in await store.surges()] == ["outage/hangzhou"]
