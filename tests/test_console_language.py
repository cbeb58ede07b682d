"""One language on every page (issue 22, item 3): every console page, error page, the
report, the drill report, the sandbox inbox, the login and first-run pages, the email's
acknowledgement pages, and the texts the frontline received (notices from
coordinator/notice_templates/ and the scripts), rendered by the real service with its
own sandbox, in Chinese and in English. None may show:

- a raw message key (`overview.title`: a key the catalogue lacks reads as itself),
- an internal name: `key=value`, `None`/`True`/`False`, snake_case identifiers
  (`surge_data`, `stand_down`), enum values (`scripted`, `major`, `auto`, `sms`) where
  a word of the page's language belongs,
- on a Chinese page, an English word outside the allow-list below (product names and
  acronyms; ids are taken out first: incident ids, people's ids and user names, e-mail
  addresses, the time zone's name; text in <code> is code and is not read),
- on an English page, Chinese beyond data: what the config files and the incidents
  hold (names, teams, regions, categories, playbook and role titles, parameter labels,
  the script's and the notices' texts, notes a leader typed) is taken out first, and
  nothing Chinese may be left (a word of the page itself left untranslated).

Visible text is what a reader sees: text nodes outside <script>/<style>, and the
title, placeholder, aria-label and alt attributes (the checks: page_words.py; their own
tests and the words' tables: test_console_words.py). The service has staff on DingTalk
and WeCom (the incident page's per-person channels) and network alarms in (Alertmanager,
PagerDuty) besides complaints."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from coordinator.acklinks import AckClaim, make_token
from coordinator.app import create_app
from coordinator.clock import ManualClock
from coordinator.config.catalog import load_catalog
from coordinator.config.settings import Settings
from coordinator.config.users import Role, add_user
from coordinator.sandbox.inprocess import SANDBOX_SENDER
from coordinator.web.state import SANDBOX, SERVICES, Services

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN, REPO
from .page_words import Ids, data_texts, problems, visible
from .redis_server import free_port
from .test_console import FAST, PASSWORD, T0

HTML_ACCEPT = {"Accept": "text/html"}
AM_TOKEN, PD_KEY = "alertmanager-token-0123456789", "pagerduty-routing-key-0123456789"
# Network alarms on the shipped alerts.yaml: a base station down in Wenzhou (Alertmanager),
# cleared; a transmission cut in Hangzhou (PagerDuty), acknowledged at the source.
STATION_DOWN = {"status": "firing", "fingerprint": "5e1f0c2a9b7d3e41",
                "labels": {"alertname": "BaseStationDown", "severity": "critical", "city": "WZ",
                           "site_name": "鹿城5号"},
                "annotations": {"summary": "温州鹿城5号基站退服", "cause": "供电中断"}}
CUT = {"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "cut-7",
       "payload": {"summary": "萧山附近传输光缆中断", "source": "nms-01", "severity": "critical",
                   "class": "transmission_cut", "custom_details": {"region": "hangzhou"}}}
def config_copy(into: Path) -> Path:
    """The shipped samples, to change in a test."""
    for part in ("playbooks", "templates", "contacts", "drills"):
        shutil.copytree(REPO / part, into / part)
    for name in ("categories.yaml", "alerts.yaml"):
        shutil.copy(REPO / name, into / name)
    return into


def with_messengers(config: Path) -> Path:
    """Every other person on DingTalk, the rest on WeCom, and broadband-outage's script
    sent on every channel each person has: the incident page's per-person channels
    (templates/_people_channels.html) show all four media."""
    people = config / "contacts" / "people.yaml"
    data = yaml.safe_load(people.read_text())
    for n, person in enumerate(data["people"]):
        person["dingtalk_userid" if n % 2 == 0 else "wecom_userid"] = f"u{n:03d}"
    people.write_text(yaml.safe_dump(data, allow_unicode=True))
    playbook = config / "playbooks" / "broadband-outage.yaml"
    playbook.write_text(playbook.read_text().replace("\naudience:\n", "\naudience:\n  channels: together\n", 1))
    return config


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    users = tmp_path / "users.yaml"
    add_user(users, "chen-li", Role.leader, FAST.hash(PASSWORD))
    add_user(users, "sun-yue", Role.viewer, FAST.hash(PASSWORD))
    port = free_port()
    config = with_messengers(config_copy(tmp_path / "config"))
    settings = Settings(port=port, public_url=f"http://127.0.0.1:{port}", store_url=f"sqlite:///{tmp_path}/l.db",
                        subscriber_key="k", ack_secret="ack-secret", tick_seconds=0, admin_token=ADMIN_TOKEN,
                        users_file=users, outbox_worker=False, sandbox=True, config_dir=config,
                        alertmanager_token=AM_TOKEN, pagerduty_routing_key=PD_KEY)
    served = TestServer(create_app(settings, clock=ManualClock(T0), catalog=load_catalog(config)),
                        host="127.0.0.1", port=port)
    await served.start_server()
    try:
        yield served
    finally:
        await served.close()


def session(server: TestServer) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=str(server.make_url("")), cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 headers=HTML_ACCEPT)


async def sign_in(http: aiohttp.ClientSession, name: str) -> None:
    page = await (await http.get("/login")).text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, page
    resp = await http.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf.group(1),
                                           "next": "/"}, allow_redirects=False)
    assert resp.status == 303


async def drain(services: Services) -> None:
    """Everything queued sent: SMS and email, and the DingTalk and WeCom cards."""
    await services.outbox.drain()
    if services.messengers is not None:
        await services.messengers.outbox.drain()
    await services.outbox.drain()


async def a_busy_day(server: TestServer) -> dict[str, str]:
    """A surge and its incident (v1 out, some acknowledged by SMS, a role escalated, then
    resolved), a drill run with a script awaiting approval, a month of complaints."""
    services = server.app[SERVICES]
    sandbox = server.app[SANDBOX]
    clock = services.clock
    assert isinstance(clock, ManualClock)
    complaints = [{"id": f"d{day}-{n}", "received_at": (T0 - timedelta(days=day, minutes=7 * n)).isoformat(),
                   "channel": ("hotline", "app", "shop", "regulator")[n % 4], "category": "broadband",
                   "region": ("ningbo", "hangzhou")[n % 2]} for day in range(1, 20) for n in range(day % 4 + 1)]
    complaints += [{"id": f"now-{n}", "received_at": (T0 - timedelta(minutes=n)).isoformat(), "channel": "hotline",
                    "category": "broadband", "region": "ningbo"} for n in range(40)]
    async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
        assert (await http.post("/api/complaints", json=complaints, headers=ADMIN_HEADERS)).status == 200
        resp = await http.post("/api/incidents", json={"playbook": "broadband-outage", "region": "ningbo"},
                               headers=ADMIN_HEADERS)
        assert resp.status in (200, 201)
        incident = (await resp.json())["id"]
        resp = await http.post("/api/drills/monthly-billing/run", json={}, headers=ADMIN_HEADERS)
        assert resp.status == 201, await resp.text()
        await drain(services)
        await sandbox.sms.settled()
        phones = sorted({m.to for m in sandbox.sms.messages if m.direction != "inbound"})
        for phone in phones[:3]:
            await sandbox.sms.reply(phone, SANDBOX_SENDER, "1")
        clock.advance(timedelta(minutes=20))  # past the roles' deadlines: escalations, reminders
        await services.pipeline.tick()
        await drain(services)
        resolved = await http.post("/api/incidents", json={"playbook": "billing-error", "region": "wenzhou",
                                                           "params": {"billing_item": "流量费", "error_period": "11月1日至3日"}},
                                   headers=ADMIN_HEADERS)
        assert resolved.status == 201, await resolved.text()
        other = (await resolved.json())["id"]
        resp = await http.post(f"/api/incidents/{other}/resolve", json={"note": "已核实"}, headers=ADMIN_HEADERS)
        assert resp.status == 200, await resp.text()
        await drain(services)
        # network alarms: one fires and clears (resolving its incident), one is acknowledged at its source
        alertmanager = {"Authorization": f"Bearer {AM_TOKEN}"}
        am = {"version": "4", "groupKey": "g", "status": "firing", "receiver": "coordinator", "groupLabels": {},
              "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "alerts": [STATION_DOWN]}
        resp = await http.post("/hooks/alertmanager", json=am, headers=alertmanager)
        assert resp.status == 200 and (await resp.json())["alerts"][0]["outcome"] == "opened", await resp.text()
        alarmed = (await resp.json())["alerts"][0]["incident"]
        clock.advance(timedelta(minutes=5))
        resp = await http.post("/hooks/alertmanager", headers=alertmanager,
                               json=am | {"status": "resolved", "alerts": [STATION_DOWN | {"status": "resolved"}]})
        assert resp.status == 200, await resp.text()
        resp = await http.post("/hooks/pagerduty/v2/enqueue", json=CUT)
        assert resp.status == 202, await resp.text()

        resp = await http.post("/hooks/pagerduty/v2/enqueue", json=CUT | {"event_action": "acknowledge"})
        assert resp.status == 202, await resp.text()
        await drain(services)
    emailed = next(d for d in await services.store.deliveries(incident) if d.key.channel == "email")
    token = make_token(services.ack_secret, AckClaim(incident, 1, emailed.key.person_id, clock.now() + timedelta(days=1)))
    media = {str(d.key.medium) for d in await services.store.deliveries(incident)}
    assert {"dingtalk", "wecom", "sms", "email"} <= media, media  # the incident page's per-person channels show them
    cut_incident = next(i.id for i in await services.store.list_incidents() if i.region == "hangzhou" and i.is_open)
    return {"incident": incident, "resolved": other, "drill": "monthly-billing", "ack": token, "alarm": alarmed,
            "alarm acknowledged": cut_incident}


def console_pages(ids: dict[str, str]) -> dict[str, str]:
    return {
        "overview": "/", "incident": f"/incidents/{ids['incident']}", "resolved incident": f"/incidents/{ids['resolved']}",
        "trigger": "/trigger", "trigger billing": "/trigger?playbook=billing-error", "drills": "/drills",
        "drill report": f"/api/drills/{ids['drill']}/reports", "stats": "/stats",
        "stats by month": "/stats?from=2025-12-01&to=2026-11-24&by=month",
        "report": f"/api/incidents/{ids['incident']}/report", "sandbox": "/sandbox/",
        "sandbox email": "/sandbox/?kind=email", "error 404": "/no/such/page",
        "error 400": "/stats?from=2026-11-31", "unknown incident": "/incidents/INC-20261124-nothing",
        "login (signed in)": "/login", "alarm incident": f"/incidents/{ids['alarm']}",
        "alarm acknowledged": f"/incidents/{ids['alarm acknowledged']}",
        "alarm report": f"/api/incidents/{ids['alarm']}/report",
    }


async def what_is_data(server: TestServer) -> set[str]:
    """The Chinese a page may show in English: the config's and the store's data."""
    services = server.app[SERVICES]
    sandbox = server.app[SANDBOX]
    incidents = await services.store.list_incidents()
    timelines = [await services.store.timeline(i.id) for i in incidents]
    runs = await services.store.drill_runs()
    messages = [m.body for m in sandbox.sms.messages]
    messages += [f"{e.subject}\n{e.text}" for emails in sandbox.inbox.mailboxes().values() for e in emails]
    return data_texts(services.catalog, incidents, timelines, runs, messages)


async def sweep(server: TestServer, ids: dict[str, str], lang: str) -> dict[str, list[str]]:
    services = server.app[SERVICES]
    # an alarm's summary is its source's own text, in whatever language the source writes
    summaries = {e.data["summary"] for i in await services.store.list_incidents()
                 for e in await services.store.timeline(i.id) if e.kind.startswith("alarm") and e.data.get("summary")}
    known = Ids(words={*services.catalog.contacts.people, "chen-li", "sun-yue", ids["drill"], *services.catalog.drills},
                data=await what_is_data(server) | summaries)
    found: dict[str, list[str]] = {}
    async with session(server) as http:
        await sign_in(http, "chen-li")
        await http.get(f"/?lang={lang}")
        for name, path in console_pages(ids).items():
            resp = await http.get(path)
            assert resp.status < 500 and resp.content_type == "text/html", (name, resp.status)
            found[name] = problems(visible(await resp.text(), lang), lang, known)
    async with session(server) as http:
        await sign_in(http, "sun-yue")
        await http.get(f"/?lang={lang}")
        resp = await http.get("/sandbox/")
        assert resp.status == 403
        found["error 403"] = problems(visible(await resp.text(), lang), lang, known)
    async with session(server) as http:
        await http.get(f"/login?lang={lang}")
        for name, path in (("login", "/login"), ("error 404 (signed out)", "/nothing")):
            found[name] = problems(visible(await (await http.get(path)).text(), lang), lang, known)
    return {name: p for name, p in found.items() if p}


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_every_page_in_one_language(server: TestServer, lang: str) -> None:
    ids = await a_busy_day(server)
    found = await sweep(server, ids, lang)
    assert found == {}, "\n" + "\n".join(f"{name}: {p}" for name, p in found.items())


async def test_what_the_frontline_reads_is_chinese(server: TestServer) -> None:
    """The notices (coordinator/notice_templates/) and scripts as the sandbox received
    them, and the email's acknowledgement pages, good link and bad."""
    ids = await a_busy_day(server)
    services = server.app[SERVICES]
    sandbox = server.app[SANDBOX]
    known = Ids(words=set(services.catalog.contacts.people))
    texts = {f"sms to {m.to}: {m.body[:20]}": m.body for m in sandbox.sms.messages if m.direction != "inbound"}
    for address, emails in sandbox.inbox.mailboxes().items():
        for e in emails:
            body = re.sub(r"https?://\S+", " ", e.text or "")  # the ack link is an address
            texts[f"email to {address}: {e.subject}"] = f"{e.subject} {body}"
    assert len(texts) > 20
    found = {name: p for name, text in texts.items() if (p := problems(text, "zh", known))}
    async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
        for name, path in (("ack page", f"/ack/{ids['ack']}"), ("bad ack link", "/ack/not-a-link"),
                           ("forged ack link", f"/ack/{ids['ack'][:-4]}AAAA")):
            resp = await http.get(path)
            page = await resp.text()
            assert resp.content_type == "text/html" and "<h1>" in page, (name, resp.status)
            if p := problems(visible(page), "zh", known):
                found[name] = p
    assert found == {}, "\n" + "\n".join(f"{name}: {p}" for name, p in found.items())


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_the_first_run_page_in_one_language(tmp_path: Path, lang: str) -> None:
    """No users yet: the login page says how to create one (commands are code)."""
    settings = Settings(store_url=f"sqlite:///{tmp_path}/f.db", subscriber_key="k", tick_seconds=0,
                        users_file=tmp_path / "users.yaml", outbox_worker=False)
    served = TestServer(create_app(settings, clock=ManualClock(T0), catalog=load_catalog(REPO)))
    await served.start_server()
    try:
        async with session(served) as http:
            page = await (await http.get(f"/login?lang={lang}")).text()
            assert "coordinator user add NAME --role leader" in page
            assert problems(visible(page, lang), lang, Ids()) == []
    finally:
        await served.close()
