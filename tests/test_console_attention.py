"""The incident page and the overview on a bad day (issue 22), over HTTP with the shipped
samples: what needs the leader at the top, the delivery numbers of one version under
its heading, escalation levels numbered as the playbook numbers them, alerts cleared
on resolution, the leader's controls, a running drill's progress, and no raw internals
(ids, enum names, `key=value`) in either language."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from coordinator.app import create_app
from coordinator.clock import ManualClock
from coordinator.config.catalog import Catalog, load_catalog
from coordinator.config.schemas import DoNotContact
from coordinator.config.settings import Settings
from coordinator.config.users import Role, add_user
from coordinator.models import DrillRun, Surge
from coordinator.pipeline import DrillSetup
from coordinator.web import sse
from coordinator.web.state import SERVICES, Services

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN, REPO
from .test_console import FAST, HTML, PASSWORD, login

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)  # Tuesday 10:00 in Shanghai: lin-tao is on call


class Text(HTMLParser):
    """The text a reader sees: no tags, attributes, scripts or styles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def visible(page: str) -> str:
    parser = Text()
    main = re.search(r"<main>.*</main>", page, flags=re.S)  # the page's own content, not the shared nav bar
    parser.feed(main.group(0) if main else page)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


def section(page: str, section_id: str) -> str:
    found = re.search(rf'<section id="{section_id}".*?</section>', page, flags=re.S)
    assert found, f"no section {section_id}"
    return found.group(0)


def without_gbroadband_lead(catalog: Catalog) -> Catalog:
    """The shipped samples with the broadband engineer (gao-peng, the tech role's level 1
    in broadband-outage) on leave: that level has no one."""
    leave = DoNotContact(person="gao-peng", reason="休假")
    contacts = dataclasses.replace(catalog.contacts, do_not_contact=(*catalog.contacts.do_not_contact, leave))
    return dataclasses.replace(catalog, contacts=contacts)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    users = tmp_path / "users.yaml"
    add_user(users, "chen-li", Role.leader, FAST.hash(PASSWORD))
    add_user(users, "sun-yue", Role.viewer, FAST.hash(PASSWORD))
    settings = Settings(store_url=f"sqlite:///{tmp_path}/c.db", subscriber_key="k", tick_seconds=0,
                        admin_token=ADMIN_TOKEN, outbox_worker=False, users_file=users)
    app = create_app(settings, clock=ManualClock(T0), catalog=without_gbroadband_lead(load_catalog(REPO)))
    async with TestClient(TestServer(app)) as c:
        yield c


def services_of(client: TestClient) -> Services:
    return client.app[SERVICES]  # type: ignore[index]


async def open_broadband(client: TestClient) -> str:
    resp = await client.post("/api/incidents", json={"playbook": "broadband-outage", "region": "ningbo", "by": "chen-li"},
                             headers=ADMIN_HEADERS)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def page_of(client: TestClient, path: str, lang: str) -> str:
    resp = await client.get(f"{path}?lang={lang}", headers=HTML)
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def test_the_board_counts_the_version_in_its_heading(client: TestClient) -> None:
    """v1 and v2 of an auto-approved wording to the same people: the numbers under
    "送达与确认 · v2" are v2's (SMS 12, not 24), v1's are one click away."""
    incident_id = await open_broadband(client)
    resp = await client.post(f"/api/incidents/{incident_id}/scripts", json={"params": {"cause": "光缆中断"}, "by": "chen-li"},
                             headers=ADMIN_HEADERS)
    assert resp.status == 201 and (await resp.json())["deliveries"] > 0
    store = services_of(client).store
    deliveries = [d for d in await store.deliveries(incident_id) if d.key.is_script]
    people = {d.key.person_id for d in deliveries if d.key.version == 2}
    sms = sum(1 for d in deliveries if d.key.version == 2 and d.key.medium == "sms")
    email = sum(1 for d in deliveries if d.key.version == 2 and d.key.medium == "email")
    assert people == {d.key.person_id for d in deliveries if d.key.version == 1} and len(people) >= 10
    await login(client, "chen-li")
    page = await page_of(client, f"/incidents/{incident_id}", "zh")
    board = section(page, "board")
    # the first table under the heading: its messages per channel (the issue: SMS 24, email 22)
    counts = [int(n) for n in re.findall(r'<td>(?:短信|邮件)</td><td class="num">(\d+)</td>', board)[:2]]
    assert "送达与确认 · v2" in board and counts == [sms, email], (counts, sms, email)
    assert f"v2 · 发给 {len(people)} 人" in visible(board)
    earlier = re.search(r'<details id="earlier-versions">.*?</details>', board, flags=re.S)
    assert earlier and 'data-version="1" data-channel="sms"' in earlier.group(0)
    assert 'data-version="2"' not in earlier.group(0)
    # the timeline says what "v1: 23 / 12" meant
    assert f"v1 发给 {len(people)} 人，共" in visible(section(page, "timeline"))


async def test_escalation_levels_line_up_and_alerts_clear_on_resolve(client: TestClient) -> None:
    """The tech role's level 1 has no one: the alert names level 1, and when the first
    choice does not acknowledge, the role goes to level 2 (the playbook's second backup),
    on the page, the timeline and the roles table alike."""
    incident_id = await open_broadband(client)
    services = services_of(client)
    incident = await services.store.get_incident(incident_id)
    tech = incident.role("tech")
    assert tech is not None and tech.chain == ["lin-tao", "he-lei"] and tech.levels == [0, 2]
    assert incident.alerts == ["role tech (技术支持（值班）): level 1: no one available "
                               "(team tech-support, position 宽带运维工程师)"]
    assert isinstance(services.clock, ManualClock)
    services.clock.advance(timedelta(minutes=11))  # tech acknowledges within 10 minutes
    await services.pipeline.tick()
    escalated = [e for e in await services.store.timeline(incident_id) if e.kind == "escalated"]
    tech_escalated = [e for e in escalated if e.data["role"] == "tech"]
    assert [(e.data["to"], e.data["level"]) for e in tech_escalated] == [("he-lei", 2)]
    api = await (await client.get(f"/api/incidents/{incident_id}", headers=ADMIN_HEADERS)).json()
    assert [(r["holder"], r["level"]) for r in api["roles"] if r["role"] == "tech"] == [("he-lei", 2)]

    await login(client, "chen-li")
    page = await page_of(client, f"/incidents/{incident_id}", "zh")
    alert = visible(section(page, "attention"))
    assert "技术支持（值班）：第 1 级备岗（团队「技术支持组」 · 岗位「宽带运维工程师」）无人可任，已跳过" in alert, alert
    assert re.search(r'<tr data-role="tech".*?<td class="num" data-level="1"[^>]*>第 2 级备岗</td>', page, flags=re.S)
    assert "技术支持（值班）：林涛 → 何磊（第 2 级备岗）" in visible(section(page, "timeline"))
    english = visible(await page_of(client, f"/incidents/{incident_id}", "en"))
    assert "技术支持（值班）: level 1" not in english and "backup level 1" in english and "backup level 2" in english

    resp = await client.post(f"/api/incidents/{incident_id}/resolve", json={"by": "chen-li"}, headers=ADMIN_HEADERS)
    assert resp.status == 200
    assert (await services.store.get_incident(incident_id)).alerts == []
    page = await page_of(client, f"/incidents/{incident_id}", "zh")
    assert "need-alert" not in page and "随事件解除清除告警 1 条" in visible(section(page, "timeline"))
    overview = await page_of(client, "/", "zh")
    assert incident_id not in section(overview, "attention")


RAW_ZH = [
    r"level \d", "no one available", r"\w+=\w", "surge_data", r"\bv\d+: \d+ / \d+", r"\bauto\b", r"\bscripted\b",
    r"\b(?:minor|major|critical)\b", r"\bningbo\b", r"\btech-support\b", r"\bcomplaints?\b", r"\b[a-z]+_[a-z_]+\b",
    r"\brole \w", r"\bopen\b", r"\bchen-li\b",
]
RAW_EN = [r"level \d:", "no one available", r"\w+=\w", "surge_data", r"\bv\d+: \d+ / \d+", r"\bmajor scripted\b",
          r"\b1 complaints\b", r"\bningbo\b", r"\b[a-z]+_[a-z_]+\b", r"\bchen-li\b"]


async def test_no_raw_internals_on_the_incident_page_and_overview(client: TestClient) -> None:
    incident_id = await open_broadband(client)
    services = services_of(client)
    await client.post(f"/api/incidents/{incident_id}/ack", json={"person": "chen-li", "via": "sms"}, headers=ADMIN_HEADERS)
    await client.post(f"/api/incidents/{incident_id}/severity", json={"severity": "major", "reason": "影响扩大", "by": "chen-li"},
                      headers=ADMIN_HEADERS)
    await client.post(f"/api/incidents/{incident_id}/notes", json={"text": "已通知网络部", "by": "chen-li"},
                      headers=ADMIN_HEADERS)
    one = [{"id": "only", "received_at": (T0 - timedelta(minutes=1)).isoformat(), "channel": "hotline",
            "category": "billing", "region": "wenzhou"}]
    assert (await client.post("/api/complaints", json=one, headers=ADMIN_HEADERS)).status == 200
    assert isinstance(services.clock, ManualClock)
    services.clock.advance(timedelta(minutes=11))
    await services.pipeline.tick()  # escalations, role reminders
    await login(client, "chen-li")
    for path in (f"/incidents/{incident_id}", "/"):
        zh = visible(await page_of(client, path, "zh"))
        found = {p: m.group(0) for p in RAW_ZH if (m := re.search(p, zh))}
        assert found == {}, (path, found)
        en = visible(await page_of(client, path, "en"))
        found = {p: m.group(0) for p in RAW_EN if (m := re.search(p, en))}
        assert found == {}, (path, found)
    en = visible(await page_of(client, f"/incidents/{incident_id}", "en"))
    assert "Severity Major · Status Script out" in en and "Minor → Major — 影响扩大" in en
    assert "24 h: 1 complaint," in visible(await page_of(client, "/", "en"))
    zh = visible(await page_of(client, f"/incidents/{incident_id}", "zh"))
    assert "应急领导小组组长 · 首选 · 经短信回复" in zh and "宁波" in zh


async def test_the_bar_shows_what_waits_and_the_controls_work(client: TestClient) -> None:
    """A script waiting for approval, roles and people not acknowledged, at the top of
    the incident page and the overview, with the actions right there; severity, note and
    acknowledging for someone through the page's forms (CSRF as the page sends it)."""
    resp = await client.post("/api/incidents", json={"playbook": "billing-error", "region": "ningbo", "by": "chen-li",
                                                     "params": {"billing_item": "流量费", "error_period": "11月"}},
                             headers=ADMIN_HEADERS)
    incident_id = (await resp.json())["id"]
    csrf = await login(client, "chen-li")
    page = await page_of(client, f"/incidents/{incident_id}", "zh")
    bar = section(page, "attention")
    approve = f'data-post="/api/incidents/{incident_id}/scripts/1/approve"'
    assert "口径 v1 待审批" in visible(bar) and approve in bar
    assert page.index('id="attention"') < page.index('id="chart"')
    controls = section(page, "controls")
    for form in ("severity-form", "note-form", "ack-form", "resolve-form"):
        assert f'id="{form}"' in controls, form
    overview = await page_of(client, "/", "zh")
    assert "口径 v1 待审批" in visible(section(overview, "attention")) and approve in overview

    headers = {"X-CSRF-Token": csrf}
    assert (await client.post(f"/api/incidents/{incident_id}/scripts/1/approve", json={}, headers=headers)).status == 200
    page = await page_of(client, f"/incidents/{incident_id}", "zh")
    bar = section(page, "attention")
    waiting = int(re.search(r'data-waiting="(\d+)"', bar).group(1))  # type: ignore[union-attr]
    assert waiting > 0 and f"{waiting} 人未确认 v1" in visible(bar) and 'id="remind"' in bar
    assert "待审批" not in visible(bar)
    assert f"{waiting} 人未确认 v1" in visible(section(await page_of(client, "/", "zh"), "attention"))

    assert (await client.post(f"/api/incidents/{incident_id}/severity", json={"severity": "critical", "reason": "监管关注"},
                              headers=headers)).status == 200
    assert (await client.post(f"/api/incidents/{incident_id}/notes", json={"text": "法务已介入"}, headers=headers)).status == 201
    ack = re.search(r'<select name="person"[^>]*><option value="([^"]+)">([^<]+)</option>', section(page, "controls"))
    assert ack and ack.group(1) == "chen-li" and ack.group(2).startswith("陈丽（应急领导小组组长")
    resp = await client.post(f"/api/incidents/{incident_id}/ack", json={"person": "chen-li", "via": "console"}, headers=headers)
    assert resp.status == 200
    page = visible(await page_of(client, f"/incidents/{incident_id}", "zh"))
    assert "较大 → 重大 — 监管关注" in page and "法务已介入" in page and "经控制台代为确认" in page
    client.session.cookie_jar.clear()
    await login(client, "sun-yue")
    page = await page_of(client, f"/incidents/{incident_id}", "zh")
    assert 'id="controls"' not in page and 'id="remind"' not in page and "未确认 v1" in visible(section(page, "attention"))


async def test_a_running_drill_shows_its_progress(client: TestClient) -> None:
    """A surge drill part-way: complaints fed out of planned and when the playbook is
    triggered directly, on the drills page; on its incident's page once it has one."""
    services = services_of(client)
    store = services.store
    run = DrillRun(id="weekly-broadband-test", drill_id="weekly-broadband", title="每周宽带故障演练", how="manual",
                   started_at=T0, base_rate=2.0, fed=7)
    assert await store.create_drill_run(run)
    await login(client, "sun-yue")
    page = await page_of(client, "/drills", "zh")
    runs = re.search(r'<div id="runs-weekly-broadband".*?<h3>', page, flags=re.S)
    assert runs, page
    planned = int(re.search(r'data-planned="(\d+)"', runs.group(0)).group(1))  # type: ignore[union-attr]
    assert planned > 7 and f"已投放模拟投诉 7 / {planned} 件" in visible(runs.group(0))
    assert "若仍未检测到突增，将于 10:30:00 直接启动预案" in visible(runs.group(0))  # 30 minutes after 10:00 local
    assert 'data-events="/events"' in page and "宽带大面积故障" in page

    opened = await services.pipeline.trigger("broadband-outage", region="ningbo", drill=True, actor="drill:weekly-broadband",
                                             setup=DrillSetup(run_id=run.id, params={}))
    saved = await store.get_drill_run(run.id)
    assert saved is not None
    # the drills page and the incident page follow these streams: a run moving on changes them
    before = [(await sse.overview_summary(services))["fingerprint"],
              (await sse.incident_summary(services, opened.incident.id))["fingerprint"]]
    await store.save_drill_run(saved.model_copy(update={"incident_id": opened.incident.id, "fed": 9, "detected": True,
                                                        "revision": saved.revision + 1}))
    after = [(await sse.overview_summary(services))["fingerprint"],
             (await sse.incident_summary(services, opened.incident.id))["fingerprint"]]
    assert before[0] != after[0] and before[1] != after[1]
    page = await page_of(client, f"/incidents/{opened.incident.id}", "zh")
    progress = visible(section(page, "drill-progress"))
    assert f"已投放模拟投诉 9 / {planned} 件" in progress and "已检测到突增并立案" in progress and "最迟 11:00:00 结束" in progress
    english = visible(section(await page_of(client, f"/incidents/{opened.incident.id}", "en"), "drill-progress"))
    assert f"Synthetic complaints fed: 9 of {planned}" in english


async def test_a_version_lacking_parameters_says_which_by_their_labels(client: TestClient) -> None:
    """A surge opens billing-error without the parameters only the leader can give."""
    surge = Surge(key="billing/ningbo", category="billing", region="ningbo", onset=T0 - timedelta(minutes=15),
                  detected_at=T0, observed=40, expected=5.0, ratio=8.0, score=12.0)
    opened = await services_of(client).pipeline.on_surge(surge)
    assert opened is not None and opened.scripts[0].missing
    incident_id = opened.id
    await login(client, "chen-li")
    for path in (f"/incidents/{incident_id}", "/"):
        bar = visible(section(await page_of(client, path, "zh"), "attention"))
        assert "口径 v1 缺参数（差错项目、差错时段），请起草新版本" in bar, bar
        assert "billing_item" not in bar and "待审批" not in bar
        bar = visible(section(await page_of(client, path, "en"), "attention"))
        assert "Script v1 lacks parameters (差错项目, 差错时段): draft a new version" in bar, bar
    zh = visible(await page_of(client, f"/incidents/{incident_id}", "zh"))
    assert {p: m.group(0) for p in RAW_ZH if (m := re.search(p, zh))} == {}
    assert "由投诉异常触发：计费争议 · 宁波" in zh and "待补充：差错项目、差错时段" in zh
