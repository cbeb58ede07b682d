"""The console's pages over HTTP (no browser): who sees which buttons, the language
switch, the previews, the reminder, the event stream; and the pure parts (charts, the
diff, the translations every template asks for)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from coordinator.app import create_app
from coordinator.config.catalog import load_catalog
from coordinator.clock import ManualClock
from coordinator.config.settings import Settings
from coordinator.config.users import Passwords, Role, add_user
from coordinator.web.charts import Mark, bar_chart
from coordinator.web.i18n import LANGS, MESSAGES
from coordinator.web.state import SERVICES
from coordinator.web.textdiff import Piece, inline_diff, text_diff

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN, REPO

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATES = Path(__file__).parent.parent / "coordinator" / "web" / "templates"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery"
FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
HTML = {"Accept": "text/html"}


async def make_client(tmp_path: Path, config: Path) -> AsyncIterator[TestClient]:
    users = tmp_path / "users.yaml"
    add_user(users, "p1", Role.leader, FAST.hash(PASSWORD))
    add_user(users, "p3", Role.viewer, FAST.hash(PASSWORD))
    add_user(users, "p2", Role.trainer, FAST.hash(PASSWORD))
    settings = Settings(store_url=f"sqlite:///{tmp_path}/c.db", subscriber_key="k", tick_seconds=0,
                        admin_token=ADMIN_TOKEN, outbox_worker=False, users_file=users)
    app = create_app(settings, clock=ManualClock(T0), catalog=load_catalog(config))
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    async for c in make_client(tmp_path, FIXTURES / "good"):
        yield c


@pytest.fixture
async def shipped(tmp_path: Path) -> AsyncIterator[TestClient]:
    """The shipped samples: playbooks with a frontline audience."""
    async for c in make_client(tmp_path, REPO):
        yield c


async def login(client: TestClient, name: str) -> str:
    page = await (await client.get("/login", headers=HTML)).text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, page
    resp = await client.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf.group(1),
                                              "next": "/"}, allow_redirects=False)
    assert resp.status == 303
    # a sign-in starts a fresh session with a CSRF token of its own: the pages carry it
    page = await (await client.get("/", headers=HTML)).text()
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert token, page
    return token.group(1)


async def open_incident(client: TestClient) -> dict[str, Any]:
    complaints = [{"id": f"c{n}", "received_at": (T0 - timedelta(minutes=n)).isoformat(), "channel": "hotline",
                   "category": "outage", "region": "hangzhou"} for n in range(5)]
    assert (await client.post("/api/complaints", json=complaints, headers=ADMIN_HEADERS)).status == 200
    resp = await client.post("/api/incidents", json={"playbook": "outage", "region": "hangzhou",
                                                     "params": {"cause": "光缆被挖断"}, "by": "p1"},
                             headers=ADMIN_HEADERS)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def test_pages_need_a_session_and_send_the_anonymous_to_login(client: TestClient) -> None:
    for path in ("/", "/drills", "/trigger", "/incidents/INC-x"):
        resp = await client.get(path, headers=HTML, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/login?next="), path


async def test_a_leader_sees_the_actions_and_a_viewer_none(client: TestClient) -> None:
    incident = await open_incident(client)
    path = f"/incidents/{incident['id']}"
    await login(client, "p1")
    page = await (await client.get(path, headers=HTML)).text()
    assert "光缆被挖断" in page and 'id="draft-form"' in page and "/resolve" in page
    assert 'href="/trigger"' in page and 'href="/stats"' in page and "p1 · 组长" in page
    assert "<svg" in page and 'data-events="/events?incident=' in page
    overview = await (await client.get("/", headers=HTML)).text()
    assert incident["id"] in overview and "移动网络/业务中断 · 杭州" in overview and "<svg" in overview
    # this service has no SMS or email channel: every page says so, above everything
    assert 'data-missing-channel="sms"' in overview and "未配置短信通道：移动网络故障 的消息无法经此通道发出" in overview
    english = await (await client.get("/?lang=en", headers=HTML)).text()
    assert "No Email channel is configured: messages of 移动网络故障 cannot go out on it" in english
    await client.get("/?lang=zh", headers=HTML)
    trigger = await (await client.get("/trigger", headers=HTML)).text()
    assert 'data-preview="/api/playbooks/outage/preview"' in trigger and "故障原因" in trigger

    client.session.cookie_jar.clear()
    await login(client, "p3")
    page = await (await client.get(path, headers=HTML)).text()
    assert "光缆被挖断" in page
    for action in ("data-post", "draft-form", "data-draft", 'href="/trigger"'):
        assert action not in page, action
    trigger = await (await client.get("/trigger", headers=HTML)).text()
    assert "故障原因" in trigger and "data-trigger" not in trigger and "data-preview" not in trigger
    drills = await (await client.get("/drills", headers=HTML)).text()
    assert "/api/drills/" in drills and "data-post" not in drills


async def test_a_trainer_may_run_drills_from_the_page(client: TestClient) -> None:
    await login(client, "p2")
    page = await (await client.get("/drills", headers=HTML)).text()
    [drill] = load_catalog(FIXTURES / "good").drills
    assert f'data-post="/api/drills/{drill}/run"' in page
    assert f'/api/drills/{drill}/reports?format=html' in page


async def test_english_on_request_kept_in_the_session(client: TestClient) -> None:
    await login(client, "p3")
    assert "总览" in await (await client.get("/", headers=HTML)).text()
    page = await (await client.get("/?lang=en", headers=HTML)).text()
    assert '<html lang="en">' in page and "Overview" in page and "总览" not in page
    assert "Drills" in await (await client.get("/drills", headers=HTML)).text()
    assert "总览" in await (await client.get("/?lang=zh", headers=HTML)).text()


async def test_previews_render_without_saving(client: TestClient) -> None:
    csrf = await login(client, "p1")
    headers = {"X-CSRF-Token": csrf}
    resp = await client.post("/api/playbooks/outage/preview", json={"region": "ningbo", "params": {"cause": "雷击"}},
                             headers=headers)
    assert resp.status == 200, await resp.text()
    first = await resp.json()
    assert "雷击" in first["sms"] and first["version"] == 1 and first["sms_encoding"] == "UCS-2"
    assert (await client.post("/api/playbooks/outage/preview", json={"region": "mars"}, headers=headers)).status == 400
    assert (await client.post("/api/playbooks/nope/preview", json={"region": "ningbo"}, headers=headers)).status == 404
    incident = await open_incident(client)
    resp = await client.post(f"/api/incidents/{incident['id']}/scripts/preview",
                             json={"params": {"cause": "市电中断"}, "sms": "短信 {}"}, headers=headers)
    preview = await resp.json()
    assert preview["version"] == 2 and preview["sms"] == "短信 {}" and "市电中断" in preview["email_text"]
    assert preview["supersedes"] == 1
    stored = await client.app[SERVICES].store.get_incident(incident["id"])  # type: ignore[index]
    assert [v.version for v in stored.scripts] == [1]


async def test_remind_chases_those_who_have_not_acknowledged(shipped: TestClient) -> None:
    client = shipped
    resp = await client.post("/api/incidents", json={"playbook": "broadband-outage", "region": "ningbo"},
                             headers=ADMIN_HEADERS)
    iid = (await resp.json())["id"]
    resp = await client.post(f"/api/incidents/{iid}/remind", json={"by": "p1"}, headers=ADMIN_HEADERS)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["version"] == 1 and answer["messages"] >= 1
    store = client.app[SERVICES].store  # type: ignore[index]
    reminders = [d for d in await store.deliveries(iid) if "-reminder-manual" in d.key.channel]
    assert len(reminders) == answer["messages"]
    kinds = [(e.kind, e.actor) for e in await store.timeline(iid)]
    assert ("remind_requested", "p1") in kinds and ("audience_reminder", "system") in kinds
    await client.post(f"/api/incidents/{iid}/resolve", json={}, headers=ADMIN_HEADERS)
    resp = await client.post(f"/api/incidents/{iid}/remind", json={}, headers=ADMIN_HEADERS)
    assert resp.status == 409


async def test_events_stream_a_summary_and_again_when_it_changes(client: TestClient) -> None:
    incident = await open_incident(client)
    await login(client, "p3")
    resp = await client.get(f"/events?incident={incident['id']}")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")

    async def next_update() -> dict[str, Any]:
        while True:
            line = (await resp.content.readline()).decode()
            if line.startswith("data: "):
                return dict(json.loads(line[6:]))

    first = await next_update()
    assert first["status"] == "scripted" and first["acks"] == 0
    await client.post(f"/api/incidents/{incident['id']}/ack", json={"person": "p1"}, headers=ADMIN_HEADERS)
    second = await next_update()
    assert second["roles_acked"] == 1 and second["fingerprint"] != first["fingerprint"]
    resp.close()
    assert (await client.get("/events?incident=INC-nope")).status == 404
    overview = await client.get("/events")
    assert overview.status == 200
    overview.close()


def test_bar_chart_draws_counts_baseline_and_marks() -> None:
    svg = bar_chart([0, 3, 10], labels=["10:00", "10:05", "10:10"], baseline=2.5, marks=[Mark(1, "onset")],
                    title="宽带 <杭州>", filling_last=True)
    assert svg.count("<rect") == 3 and 'class="bar filling"' in svg
    assert 'class="baseline"' in svg and "onset" in svg and "10:05: 3" in svg
    assert "&lt;杭州&gt;" in svg and "<杭州>" not in svg
    with pytest.raises(ValueError):
        bar_chart([1], labels=[])


@pytest.mark.parametrize(("old", "new", "pieces"), [
    ("断网", "断网", [Piece("same", "断网")]),
    ("预计12:00恢复", "预计14:00恢复", [Piece("same", "预计1"), Piece("del", "2"), Piece("ins", "4"),
                                        Piece("same", ":00恢复")]),
    ("", "新", [Piece("ins", "新")]),
])
def test_inline_diff(old: str, new: str, pieces: list[Piece]) -> None:
    assert inline_diff(old, new) == pieces


def test_text_diff_keeps_unchanged_lines_whole() -> None:
    pieces = text_diff("第一行\n第二行\n第三行\n", "第一行\n第二段\n第三行\n")
    assert pieces[0] == Piece("same", "第一行\n") and pieces[-1] == Piece("same", "第三行\n")
    assert Piece("del", "行") in pieces and Piece("ins", "段") in pieces


def test_every_key_a_template_asks_for_is_translated() -> None:
    used: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(["']([a-z_]+(?:\.[a-z_-]+)+|[a-z_]+)["']\)""", template.read_text()))
    assert used, "no t() calls found"
    missing = sorted(k for k in used if k not in MESSAGES)
    assert missing == []
    assert all(len(pair) == len(LANGS) and all(pair) for pair in MESSAGES.values())
