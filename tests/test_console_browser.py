"""The console in a real browser: headless Chromium from the system (/usr/bin/chromium)
driven by Playwright, against the real service over TCP with the Twilio sandbox and an
SMTP inbox. A leader signs in, triggers a playbook, edits and approves a version of the
script, watches acknowledgements arrive live as staff reply by SMS, and resolves; a
viewer finds no buttons and the API refusing. A screenshot of the incident page is kept
(COORDINATOR_TEST_ARTIFACTS, else the test's tmp dir).

Outside CI these skip when Chromium or Playwright is missing; in CI they must run
(scripts/ensure-test-services installs Chromium)."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import web
from argon2 import PasswordHasher

from coordinator.app import create_app
from coordinator.config.catalog import Catalog, load_catalog
from coordinator.sandbox import Delivery, SmtpInbox, TwilioSandbox
from coordinator.commands.sandboxed import free_port
from coordinator.segments import sms_segments
from coordinator.config.settings import Settings
from coordinator.store import Store
from coordinator.config.users import Passwords, Role, add_user
from coordinator.web.state import SERVICES

from .conftest import ADMIN_TOKEN, REPO

CHROMIUM = Path("/usr/bin/chromium")
CONSOLE_JS = REPO / "coordinator" / "web" / "static" / "console.js"
SID = "AC" + "3" * 32
TOKEN = "sandbox-auth-token"
FROM = "+15005550006"
PASSWORD = "correct horse battery"
FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
WAIT_MS = 10_000  # a generous bound on each wait; the waits end as soon as the page is there

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None  # type: ignore[assignment]


def _need_browser() -> None:
    missing = ("Playwright is not installed (pip install -e '.[dev]')" if async_playwright is None
               else f"Chromium is not at {CHROMIUM} (apt-get install chromium)" if not CHROMIUM.exists() else None)
    if missing is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests must run in CI: {missing}", pytrace=False)
    pytest.skip(f"browser tests skipped: {missing}")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    _need_browser()
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Service:
    url: str
    sandbox: TwilioSandbox
    store: Store


@asynccontextmanager
async def console_service(tmp_path: Path, users: Path, catalog: Catalog, db: str) -> AsyncIterator[Service]:
    """A console on `catalog` with the Twilio sandbox, the SMTP inbox and the real clock."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    inbox = SmtpInbox()
    await inbox.start()
    sandbox = TwilioSandbox(SID, TOKEN, numbers=(FROM,), inbound_url=f"{public}/hooks/twilio/inbound", seed=5,
                            delivery=Delivery(step_delay=0.005, receipt_delay=0.01), inbox=inbox)
    await sandbox.start()
    host, smtp_port = inbox.address
    settings = Settings(
        port=port, public_url=public, store_url=f"sqlite:///{tmp_path}/{db}", subscriber_key="k",
        ack_secret="ack-secret", tick_seconds=0, users_file=users, admin_token=ADMIN_TOKEN,
        twilio_account_sid=SID, twilio_auth_token=TOKEN, twilio_from=FROM, twilio_base_url=sandbox.base_url,
        smtp_host=host, smtp_port=smtp_port, smtp_from="yingji@example.com",
    )
    runner = web.AppRunner(create_app(settings, catalog=catalog), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Service(public, sandbox, runner.app[SERVICES].store)
    finally:
        await runner.cleanup()
        await sandbox.stop()
        await inbox.stop()


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    users = tmp_path / "users.yaml"
    add_user(users, "chen-li", Role.leader, FAST.hash(PASSWORD))
    add_user(users, "sun-yue", Role.viewer, FAST.hash(PASSWORD))
    async with console_service(tmp_path, users, load_catalog(REPO), "console.db") as running:
        yield running


async def sign_in(browser: Browser, service: Service, name: str) -> Page:
    context = await browser.new_context(base_url=service.url, locale="zh-CN")
    page = await context.new_page()
    await page.goto("/")
    await expect(page).to_have_url(f"{service.url}/login?next=%2F")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("总览", timeout=WAIT_MS)
    return page


async def sms_sent(service: Service, incident_id: str, version: int, count: int) -> list[str]:
    """The phones the sandbox has received `version` on, once at least `count` have."""
    for _ in range(400):
        phones = [d.address for d in await service.store.deliveries(incident_id)
                  if d.key.version == version and d.key.channel == "sms" and service.sandbox.received_by(d.address)]
        if len(phones) >= count:
            return phones
        await asyncio.sleep(0.025)
    raise AssertionError(f"version {version} did not reach {count} phones")


def artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("COORDINATOR_TEST_ARTIFACTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


async def test_a_leader_runs_an_incident_and_a_viewer_only_watches(
        browser: Browser, service: Service, tmp_path: Path) -> None:
    page = await sign_in(browser, service, "chen-li")
    assert await page.locator(".banner.warn").count() == 0  # SMS and email are both configured
    # The pages' Content-Security-Policy runs no inline script: nothing on them may need one.
    blocked: list[str] = []
    page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda exc: blocked.append(str(exc)))

    # trigger: the preview follows the parameters before anything is sent
    await page.click("nav >> text=启动预案")
    await page.select_option("select[name=playbook]", "billing-error")
    await expect(page.locator("input[name='param:billing_item']")).to_be_visible()
    await page.select_option("select[name=region]", "ningbo")
    await page.fill("input[name='param:billing_item']", "11月套餐外流量费")
    # the live preview names what is still missing by its label, as the server's does
    await expect(page.locator("#preview-sms")).to_contain_text("11月套餐外流量费", timeout=WAIT_MS)
    await expect(page.locator("#preview-meta")).to_contain_text("待补充参数：差错时段")
    await expect(page.locator("#preview-meta")).not_to_contain_text("error_period")
    await page.fill("input[name='param:error_period']", "11月20日至22日")
    await expect(page.locator("#preview-sms")).to_contain_text("11月20日至22日，部分客户的11月套餐外流量费存在多收",
                                                              timeout=WAIT_MS)
    await page.click("button[data-trigger]")
    await expect(page.locator("#head h1")).to_contain_text("计费差错", timeout=WAIT_MS)
    incident_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#v1")).to_have_attribute("data-approved", "no")  # approval: leader

    # the editor's render names an emptied parameter by its label too
    await page.fill("#draft-form input[name='param:error_period']", "")
    await page.click("#draft-form button[data-render]")
    await expect(page.locator("#draft-form .result")).to_have_text("待补充参数：差错时段", timeout=WAIT_MS)
    await page.fill("#draft-form input[name='param:error_period']", "11月20日至22日")

    # edit: the SMS count follows the text as it is typed, with the incident's code the
    # server adds to every SMS (a reply "1 CODE" names the incident)
    sms = "【统一口径v2】11月20日至22日部分客户流量费多收，系统将全额退回，无需申请。勿手工调账。请回复1确认收到"
    code = await page.locator("textarea[name=sms]").get_attribute("data-code")
    assert code and len(code) == 3
    sent_sms = f"{sms}〔事件码{code}〕"
    await page.fill("textarea[name=sms]", sms)
    await expect(page.locator("#sms-count")).to_have_attribute("data-segments", str(sms_segments(sent_sms).segments))
    await page.click("button[data-draft]")
    await expect(page.locator("#v2")).to_have_attribute("data-approved", "no", timeout=WAIT_MS)
    await expect(page.locator("#v2 p.sms")).to_have_text(sent_sms)
    await expect(page.locator("#compare ins").first).to_be_visible()  # v1 → v2, server-side diff

    # approve: v2 goes out through the sandbox
    await page.click("#v2 button[data-post]")
    await expect(page.locator("#v2")).to_have_attribute("data-approved", "yes", timeout=WAIT_MS)
    await expect(page.locator("#board")).not_to_have_attribute("data-in-scope", "0", timeout=WAIT_MS)
    await page.evaluate("window.notReloaded = true")

    # acknowledgements arrive live, with no reload, as staff reply "1" by SMS
    first, second = (await sms_sent(service, incident_id, 2, 2))[:2]
    await service.sandbox.reply(first, FROM, "1")
    await expect(page.locator("#board")).to_have_attribute("data-acked", "1", timeout=WAIT_MS)
    await service.sandbox.reply(second, FROM, "确认")
    await expect(page.locator("#board")).to_have_attribute("data-acked", "2", timeout=WAIT_MS)
    await expect(page.locator("#timeline tr.ev-script_acked")).to_have_count(2)
    assert await page.evaluate("window.notReloaded") is True
    shot = artifacts(tmp_path) / "incident-page.png"
    await page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot of the incident page: {shot}")

    # a viewer: the same page, no buttons, and the API says no
    viewer = await sign_in(browser, service, "sun-yue")
    await expect(viewer.locator("nav")).not_to_contain_text("启动预案")
    await viewer.goto(f"/incidents/{incident_id}")
    await expect(viewer.locator("#board")).to_have_attribute("data-acked", "2")
    assert await viewer.locator("button[data-post], button[data-draft], #draft-form").count() == 0
    refused = await viewer.evaluate("""async (id) => {
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const r = await fetch(`/api/incidents/${id}/remind`, {method: "POST", body: "{}",
            headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}});
        return [r.status, (await r.json()).error.message];
    }""", incident_id)
    assert refused == [403, f"POST /api/incidents/{incident_id}/remind needs the leader role"]

    # the leader reminds the rest, then resolves; the viewer's page follows live
    await page.click("#remind")
    await expect(page.locator("#timeline tr.ev-audience_reminder")).to_have_count(1, timeout=WAIT_MS)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.fill("#resolve-form input[name=note]", "差错已纠正")
    url = page.url
    await page.press("#resolve-form input[name=note]", "Enter")  # the form never submits itself
    await expect(page.locator("#resolve-form input[name=note]")).to_have_value("差错已纠正")
    assert page.url == url
    await page.click("#resolve-form button[data-post]")
    await expect(page.locator("#head")).to_have_attribute("data-status", "resolved", timeout=WAIT_MS)
    await expect(viewer.locator("#head")).to_have_attribute("data-status", "resolved", timeout=WAIT_MS)
    incident = await service.store.get_incident(incident_id)
    assert incident.status.value == "resolved" and incident.scripts[-1].kind.value == "stand_down"
    assert blocked == []


SMS_CASES = [
    "", "a" * 160, "a" * 161, "€" * 80, "€" * 81, "【统一口径】" * 12, "中" * 70, "中" * 71, "😀" * 35, "😀" * 36,
    "a" * 152 + "€", "x" * 66 + "😀" + "y" * 10,
]


async def test_the_pages_sms_count_is_the_servers(browser: Browser) -> None:
    page = await browser.new_page()
    await page.set_content('<script type="application/json" id="console-text">{}</script>')
    await page.add_script_tag(path=str(CONSOLE_JS))
    counted: list[dict[str, Any]] = await page.evaluate("(ts) => ts.map((t) => window.smsSegments(t))", SMS_CASES)
    assert [(c["encoding"], c["segments"], c["units"]) for c in counted] == [tuple(sms_segments(t)) for t in SMS_CASES]
