"""A leader on a phone at night (issue 22): headless Chromium at 390x844 against the real
service (Twilio sandbox, SMTP inbox; tests/test_console_browser.py's fixtures). Approve,
remind, change the severity, add a note and resolve, each reachable on the first screen
without scrolling: the control is inside the viewport when the page has loaded, or one
tap on a visible control there reveals it in place. Screenshots are kept
(COORDINATOR_TEST_ARTIFACTS, else the test's tmp dir)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest

from coordinator.config.catalog import load_catalog
from coordinator.config.schemas import DoNotContact
from coordinator.config.users import Role, add_user
from coordinator.models import DrillRun

from .conftest import ADMIN_HEADERS, REPO
from .test_console_browser import (FAST, PASSWORD, WAIT_MS, Service, artifacts,  # noqa: F401
                                   browser, console_service, service)

try:
    from playwright.async_api import Browser, Page, expect
except ImportError:  # pragma: no cover - the fixtures skip first
    pass

PHONE = {"width": 390, "height": 844}
# A bad day: five people on leave, so that billing-error opens with levels no one can
# fill in four roles (one of them with no one at all) besides its version waiting for
# approval.
ON_LEAVE = ("he-lei", "ma-xiaodong", "song-yu", "luo-fang", "zhao-min")


@pytest.fixture
async def bad_day(tmp_path: Path) -> AsyncIterator[Service]:
    """The service of tests/test_console_browser.py (Twilio sandbox, SMTP inbox, real
    clock) on the shipped samples with ON_LEAVE on the do-not-contact list."""
    users = tmp_path / "users.yaml"
    add_user(users, "chen-li", Role.leader, FAST.hash(PASSWORD))
    catalog = load_catalog(REPO)
    leave = tuple(DoNotContact(person=p, reason="休假") for p in ON_LEAVE)
    contacts = dataclasses.replace(catalog.contacts, do_not_contact=(*catalog.contacts.do_not_contact, *leave))
    async with console_service(tmp_path, users, dataclasses.replace(catalog, contacts=contacts), "phone.db") as running:
        yield running


async def on_first_screen(page: Page, selector: str) -> None:
    """`selector` is visible, wholly inside the phone's screen, and the page has not
    been scrolled to get there."""
    box = await page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not displayed"
    scrolled = await page.evaluate("window.scrollY")
    assert scrolled == 0, f"the page was scrolled by {scrolled}px"
    assert 0 <= box["y"] and box["y"] + box["height"] <= PHONE["height"], (selector, box)
    assert 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], (selector, box)


async def open_billing_incident(service: Service) -> str:
    """billing-error waits for the leader's approval: version 1 is pending."""
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{service.url}/api/incidents", headers=ADMIN_HEADERS, json={
            "playbook": "billing-error", "region": "ningbo", "by": "chen-li",
            "params": {"billing_item": "11月套餐外流量费", "error_period": "11月20日至22日"}})
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["id"])


async def test_a_leader_on_a_phone_does_everything_from_the_first_screen(
        browser: Browser, bad_day: Service, tmp_path: Path) -> None:  # noqa: F811 (fixtures)
    service = bad_day
    incident_id = await open_billing_incident(service)
    alerts = len((await service.store.get_incident(incident_id)).alerts)
    assert alerts >= 5
    context = await browser.new_context(base_url=service.url, locale="zh-CN", viewport=PHONE, has_touch=True,
                                        is_mobile=True, device_scale_factor=2)
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(f"/login?next=/incidents/{incident_id}")
    await page.fill("input[name=name]", "chen-li")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("#head h1")).to_contain_text("计费差错", timeout=WAIT_MS)
    shots = artifacts(tmp_path)
    await page.screenshot(path=str(shots / "phone-incident-pending.png"))

    # what waits for the leader is at the top, with its action
    await expect(page.locator("#attention")).to_contain_text("口径 v1 待审批")
    await expect(page.locator("#attention > p.need-alert")).to_have_count(2)  # the rest one tap away
    await expect(page.locator("#attention .more-alerts summary")).to_have_text(f"另有 {alerts - 2} 条告警")
    await expect(page.locator("#attention .need-unfilled")).to_contain_text("法律合规")
    for selector in ("#approve-now", "#severity-box > summary", "#note-box > summary", "#resolve-form button[data-post]"):
        await on_first_screen(page, selector)

    # approve: v1 goes out; those who have not acknowledged are counted and can be reminded
    await page.tap("#approve-now")
    await expect(page.locator("#v1")).to_have_attribute("data-approved", "yes", timeout=WAIT_MS)
    await expect(page.locator("#attention")).not_to_have_attribute("data-waiting", "0", timeout=WAIT_MS)
    await expect(page.locator("#attention")).to_contain_text("人未确认 v1")
    await page.evaluate("window.scrollTo(0, 0)")
    await on_first_screen(page, "#remind")
    await page.tap("#remind")
    await expect(page.locator("#timeline tr.ev-audience_reminder")).to_have_count(1, timeout=WAIT_MS)
    # the overview says the same at its top
    overview = await context.new_page()
    await overview.goto("/")
    await expect(overview.locator(f'#attention [data-incident="{incident_id}"]')).to_contain_text("人未确认 v1")
    await on_first_screen(overview, f'#attention [data-incident="{incident_id}"] button[data-post$="/remind"]')
    await overview.screenshot(path=str(shots / "phone-overview.png"))
    await overview.close()

    # the severity: one tap on its summary reveals the form in place
    await page.evaluate("window.scrollTo(0, 0)")
    await page.tap("#severity-box > summary")
    for selector in ("#severity-form select", "#severity-form button[data-post]"):
        await on_first_screen(page, selector)
    await page.select_option("#severity-form select[name=severity]", "critical")
    await page.fill("#severity-form input[name=reason]", "监管关注")
    await page.tap("#severity-form button[data-post]")
    await expect(page.locator("#head")).to_have_attribute("data-severity", "critical", timeout=WAIT_MS)
    await expect(page.locator("#incident-severity")).to_have_text("重大")

    # a note, the same way
    await page.evaluate("window.scrollTo(0, 0)")
    await page.tap("#note-box > summary")
    for selector in ("#note-form textarea", "#note-form button[data-post]"):
        await on_first_screen(page, selector)
    await page.fill("#note-form textarea[name=text]", "法务已介入，退费方案今晚确定")
    await page.tap("#note-form button[data-post]")
    await expect(page.locator("#timeline tr.ev-note")).to_contain_text("法务已介入", timeout=WAIT_MS)
    await expect(page.locator("#note-form textarea[name=text]")).to_have_value("")
    await page.screenshot(path=str(shots / "phone-incident-working.png"))

    # resolve
    await page.evaluate("window.scrollTo(0, 0)")
    await on_first_screen(page, "#resolve-form button[data-post]")
    await page.fill("#resolve-form input[name=note]", "差错已纠正")
    await page.tap("#resolve-form button[data-post]")
    await expect(page.locator("#head")).to_have_attribute("data-status", "resolved", timeout=WAIT_MS)
    await expect(page.locator("#attention")).to_contain_text("暂无待办")
    incident = await service.store.get_incident(incident_id)
    assert incident.status.value == "resolved" and incident.severity == "critical"
    await page.screenshot(path=str(shots / "phone-incident-resolved.png"), full_page=True)
    assert problems == []
    await context.close()


async def test_a_running_drill_moves_on_live(browser: Browser, service: Service) -> None:  # noqa: F811 (fixtures)
    """The drills page follows a running drill without a reload: as the run feeds its
    synthetic complaints, the count on the page moves."""
    started = datetime.now(timezone.utc)  # this service runs on the real clock
    run = DrillRun(id="weekly-broadband-live", drill_id="weekly-broadband", title="每周宽带故障演练", how="manual",
                   started_at=started, base_rate=2.0, fed=3)
    assert await service.store.create_drill_run(run)
    context = await browser.new_context(base_url=service.url, locale="zh-CN", viewport=PHONE)
    page = await context.new_page()
    await page.goto("/login?next=/drills")
    await page.fill("input[name=name]", "sun-yue")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    progress = page.locator("#runs-weekly-broadband .drill-progress")
    await expect(progress).to_have_attribute("data-fed", "3", timeout=WAIT_MS)
    await expect(progress).to_contain_text("已投放模拟投诉 3 /")
    await page.evaluate("window.notReloaded = true")
    saved = await service.store.get_drill_run(run.id)
    assert saved is not None
    await service.store.save_drill_run(saved.model_copy(update={"fed": 5, "revision": saved.revision + 1}))
    await expect(progress).to_have_attribute("data-fed", "5", timeout=WAIT_MS)
    await expect(progress).to_contain_text("已投放模拟投诉 5 /")
    assert await page.evaluate("window.notReloaded") is True
    await context.close()
