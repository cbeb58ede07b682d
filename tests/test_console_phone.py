"""Every console page usable on a phone (issue 22, item 6): headless Chromium from the
system (/usr/bin/chromium, driven by Playwright) visits every page at 390x844 and at
1280x800, in Chinese and in English, against the real service with its own sandbox, an
incident in a region whose name is 64 characters long, a drill run and a month of
complaints. On each page:

- nothing wider than the viewport (document scrollWidth), and no element's right edge
  beyond it, except inside a box that scrolls sideways by design (a wide table);
- every SVG text inside its SVG's box (no chart label cut off), and drawn at 10 px or
  more as the chart is scaled on the page (a wide chart squeezed onto a phone is not);
- the statistics chart with values on its y axis;
- no message key shown raw (`overview.title`).

A screenshot of each page is kept (COORDINATOR_TEST_ARTIFACTS, else the test's tmp dir,
under console-pages/)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import yaml
from aiohttp.test_utils import TestServer

from coordinator.app import create_app
from coordinator.clock import ManualClock
from coordinator.config.catalog import load_catalog
from coordinator.config.settings import Settings
from coordinator.config.users import Role, add_user
from coordinator.web.state import SERVICES

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN
from .redis_server import free_port
from .page_words import RAW_KEY
from .test_console_language import AM_TOKEN, STATION_DOWN, config_copy, with_messengers
from .test_console_browser import FAST, PASSWORD, WAIT_MS, artifacts, browser  # noqa: F401 (a fixture)

try:
    from playwright.async_api import Browser, Page
except ImportError:  # pragma: no cover - depends on the machine (test_console_browser skips then)
    pass

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
LONG_REGION = "NingboBeilunPortIndustrialZoneAndMeishanIslandFreeTradeAreaEast1"  # 64 characters, no break
VIEWPORTS = {"phone": (390, 844), "desktop": (1280, 800)}

# What the page checks, in the page: problems as text, none expected.
LAYOUT_CHECK = """() => {
  const W = window.innerWidth, problems = [], MIN_FONT_PX = 10;
  const doc = document.documentElement;
  if (doc.scrollWidth > W) problems.push(`page ${doc.scrollWidth}px wide in a ${W}px viewport`);
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : "");
  const scrolls = (el) => {
    for (let a = el; a && a !== document.body; a = a.parentElement) {
      const s = getComputedStyle(a);
      if ((s.overflowX === "auto" || s.overflowX === "scroll") && a.getBoundingClientRect().right <= W + 0.5) return true;
    }
    return false;
  };
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.right > W + 0.5 && !scrolls(el.parentElement)) {
      problems.push(`${name(el)} ends at ${Math.round(r.right)}px: "${(el.textContent || "").trim().slice(0, 40)}"`);
    }
  }
  for (const svg of document.querySelectorAll("svg")) {
    const box = svg.getBoundingClientRect();
    const scale = svg.viewBox.baseVal && svg.viewBox.baseVal.width ? box.width / svg.viewBox.baseVal.width : 1;
    for (const text of svg.querySelectorAll("text")) {
      const r = text.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;  // a chart drawn for the other screen, not shown
      const size = parseFloat(getComputedStyle(text).fontSize) * scale;
      if (size < MIN_FONT_PX) problems.push(`chart text "${text.textContent}" drawn at ${size.toFixed(1)}px`);
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5) {
        problems.push(`chart text "${text.textContent}" outside its chart`);
      }
    }
  }
  return problems;
}"""


def config_with_a_long_region(into: Path) -> Path:
    """The shipped samples, Ningbo renamed to 64 characters with nowhere to break, and
    staff on DingTalk and WeCom (with_messengers)."""
    with_messengers(config_copy(into))
    regions = into / "contacts" / "regions.yaml"
    data = yaml.safe_load(regions.read_text())
    for region in data["regions"]:
        if region["id"] == "ningbo":
            region["name"] = LONG_REGION
    regions.write_text(yaml.safe_dump(data, allow_unicode=True))
    return into


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    users = tmp_path / "users.yaml"
    add_user(users, "chen-li", Role.leader, FAST.hash(PASSWORD))
    add_user(users, "sun-yue", Role.viewer, FAST.hash(PASSWORD))
    port = free_port()
    config = config_with_a_long_region(tmp_path / "config")
    settings = Settings(port=port, public_url=f"http://127.0.0.1:{port}", store_url=f"sqlite:///{tmp_path}/p.db",
                        subscriber_key="k", tick_seconds=0, admin_token=ADMIN_TOKEN, users_file=users,
                        outbox_worker=False, sandbox=True, config_dir=config, alertmanager_token=AM_TOKEN)
    catalog = load_catalog(config)
    served = TestServer(create_app(settings, clock=ManualClock(T0), catalog=catalog), host="127.0.0.1", port=port)
    await served.start_server()
    try:
        yield served
    finally:
        await served.close()


async def a_day_of_work(server: TestServer) -> dict[str, str]:
    """A month of complaints, a surge in Ningbo, an incident there with v1 out, a drill run."""
    import aiohttp

    services = server.app[SERVICES]
    complaints = [{"id": f"d{day}-{n}", "received_at": (T0 - timedelta(days=day, minutes=7 * n)).isoformat(),
                   "channel": ("hotline", "app", "shop")[n % 3], "category": "broadband",
                   "region": ("ningbo", "hangzhou")[n % 2]} for day in range(1, 23) for n in range(day % 5 + 1)]
    complaints += [{"id": f"now-{n}", "received_at": (T0 - timedelta(minutes=n)).isoformat(), "channel": "hotline",
                    "category": "broadband", "region": "ningbo"} for n in range(40)]
    async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
        resp = await http.post("/api/complaints", json=complaints, headers=ADMIN_HEADERS)
        assert resp.status == 200, await resp.text()
        resp = await http.post("/api/incidents", json={"playbook": "broadband-outage", "region": "ningbo"},
                               headers=ADMIN_HEADERS)
        assert resp.status in (200, 201), (resp.status, await resp.text())  # 200: the surge opened it already
        incident = (await resp.json())["id"]
        resp = await http.post("/api/drills/monthly-billing/run", json={}, headers=ADMIN_HEADERS)
        assert resp.status == 201, await resp.text()
        resp = await http.post("/api/incidents", headers=ADMIN_HEADERS, json={
            "playbook": "billing-error", "region": "wenzhou",
            "params": {"billing_item": "流量费", "error_period": "11月1日至3日"}})
        assert resp.status == 201, await resp.text()
        resolved = (await resp.json())["id"]
        resp = await http.post(f"/api/incidents/{resolved}/resolve", json={"note": "已核实"}, headers=ADMIN_HEADERS)
        assert resp.status == 200, await resp.text()
        # a network alarm opens one (its timeline line with the alarm's name and labels)
        am = {"version": "4", "groupKey": "g", "status": "firing", "receiver": "coordinator", "groupLabels": {},
              "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "alerts": [STATION_DOWN]}
        resp = await http.post("/hooks/alertmanager", json=am, headers={"Authorization": f"Bearer {AM_TOKEN}"})
        assert resp.status == 200, await resp.text()
        alarmed = (await resp.json())["alerts"][0]["incident"]
    await services.outbox.drain()
    assert services.messengers is not None
    await services.messengers.outbox.drain()
    media = {d.key.medium for d in await services.store.deliveries(incident)}
    assert {"dingtalk", "wecom", "sms", "email"} <= {str(m) for m in media}, media
    return {"incident": incident, "drill": "monthly-billing", "resolved": resolved, "alarm": alarmed}


async def signed_in(browser: Browser, base: str, name: str | None, size: tuple[int, int], lang: str) -> Page:
    context = await browser.new_context(base_url=base, viewport={"width": size[0], "height": size[1]},
                                        locale="zh-CN")
    page = await context.new_page()
    if name is not None:
        await page.goto("/login")
        await page.fill("input[name=name]", name)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/", timeout=WAIT_MS)
    await page.goto(f"/login?lang={lang}")  # the language is kept in the session from here on
    return page


def pages(ids: dict[str, str]) -> dict[str, str]:
    incident = ids["incident"]
    return {
        "overview": "/", "incident": f"/incidents/{incident}", "trigger": "/trigger", "drills": "/drills",
        "drill-report": f"/api/drills/{ids['drill']}/reports", "stats": "/stats",
        "report": f"/api/incidents/{incident}/report", "sandbox": "/sandbox/",
        "error-404": "/no/such/page", "error-400": "/stats?from=2026-13-01&to=2026-11-01",
        "resolved-incident": f"/incidents/{ids['resolved']}", "trigger-billing": "/trigger?playbook=billing-error",
        "stats-by-month": "/stats?from=2025-12-01&to=2026-11-24&by=month", "sandbox-email": "/sandbox/?kind=email",
        "unknown-incident": "/incidents/INC-20261124-nothing", "alarm-incident": f"/incidents/{ids['alarm']}",
    }


async def look_at(page: Page, path: str, shot: Path) -> list[str]:
    """The page's layout problems, and any message key shown as it is (a key the
    catalogue lacks reads as itself: test_console_language.RAW_KEY)."""
    response = await page.goto(path, wait_until="load")
    assert response is not None
    await page.screenshot(path=str(shot), full_page=True)
    problems: list[str] = await page.evaluate(LAYOUT_CHECK)
    problems += [f"raw key {key}" for key in RAW_KEY.findall(await page.inner_text("body"))]
    return problems


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
async def test_every_page_fits_a_phone_and_a_desktop(browser: Browser, server: TestServer, tmp_path: Path,  # noqa: F811
                                                     viewport: str, lang: str) -> None:
    ids = await a_day_of_work(server)
    base = str(server.make_url("")).rstrip("/")
    size = VIEWPORTS[viewport]
    shots = artifacts(tmp_path) / "console-pages"
    shots.mkdir(exist_ok=True)
    found: dict[str, list[str]] = {}
    statuses: dict[str, Any] = {}

    leader = await signed_in(browser, base, "chen-li", size, lang)
    for name, path in pages(ids).items():
        found[name] = await look_at(leader, path, shots / f"{name}-{viewport}-{lang}.png")
        statuses[name] = await leader.evaluate("document.title")
    # the statistics chart has values on its y axis, and its long region stays in its card
    await leader.goto("/stats")
    ticks = await leader.locator("svg.periods text.ytick").all_text_contents()
    assert len(ticks) >= 2 and all(t.isdigit() for t in ticks) and int(ticks[-1]) > 0, ticks
    await leader.goto("/")
    assert await leader.get_by_text(LONG_REGION).count() > 0
    # a viewer is refused the sandbox (403, with who they are); signed out, the login page
    viewer = await signed_in(browser, base, "sun-yue", size, lang)
    found["error-403"] = await look_at(viewer, "/sandbox/", shots / f"error-403-{viewport}-{lang}.png")
    assert "sun-yue" in await viewer.inner_text("main")
    nobody = await signed_in(browser, base, None, size, lang)
    found["login"] = await look_at(nobody, "/login", shots / f"login-{viewport}-{lang}.png")
    print(f"screenshots of every page: {shots}")
    assert {name: p for name, p in found.items() if p} == {}
