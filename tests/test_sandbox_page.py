"""The sandbox page is the service's own (`serve --sandbox`), behind the console's login:
a trainer reads what each phone and mailbox received and replies as a staff member,
with the session's CSRF token; the reply goes through the sandbox to the service's
inbound hook. Signed out, a viewer, or a form without its token: nothing. The sandbox's
own port serves its Messages API only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from argon2 import PasswordHasher

from coordinator.app import create_app
from coordinator.config.catalog import Catalog
from coordinator.clock import ManualClock
from coordinator.sandbox.inprocess import SANDBOX_SENDER, RunningSandbox
from coordinator.config.settings import Settings
from coordinator.config.users import Passwords, Role, add_user
from coordinator.web.sandbox_page import SANDBOX
from coordinator.web.state import SERVICES, Services

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN
from .redis_server import free_port

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery"
FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
HTML = {"Accept": "text/html"}



@dataclass
class Service:
    server: TestServer

    @property
    def services(self) -> Services:
        return self.server.app[SERVICES]

    @property
    def sandbox(self) -> RunningSandbox:
        return self.server.app[SANDBOX]

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(base_url=str(self.server.make_url("")), cookie_jar=aiohttp.CookieJar(unsafe=True))


async def serve(tmp_path: Path, catalog: Catalog, *, sandbox: bool, sandbox_sms: str = "twilio") -> TestServer:
    users = tmp_path / "users.yaml"
    for name, role in (("zhao-min", Role.trainer), ("sun-yue", Role.viewer)):
        add_user(users, name, role, FAST.hash(PASSWORD))
    # The sandbox posts replies to the public URL's inbound hook: the service listens there.
    port = free_port()
    settings = Settings(port=port, public_url=f"http://127.0.0.1:{port}", store_url=f"sqlite:///{tmp_path}/s.db",
                        subscriber_key="k", tick_seconds=0, admin_token=ADMIN_TOKEN, users_file=users,
                        outbox_worker=False, sandbox=sandbox, sandbox_sms=sandbox_sms)
    server = TestServer(create_app(settings, clock=ManualClock(T0), catalog=catalog), host="127.0.0.1", port=port)
    await server.start_server()
    return server


@pytest.fixture
async def service(tmp_path: Path, catalog: Catalog) -> AsyncIterator[Service]:
    server = await serve(tmp_path, catalog, sandbox=True)
    try:
        yield Service(server)
    finally:
        await server.close()


async def sign_in(http: aiohttp.ClientSession, name: str) -> None:
    page = await (await http.get("/login")).text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, page
    resp = await http.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf.group(1), "next": "/"},
                           allow_redirects=False)
    assert resp.status == 303, await resp.text()


def reply_form(page: str, phone: str) -> dict[str, str]:
    """The page's reply form for `phone`, its hidden fields as the page filled them in."""
    section = page[page.index(f'id="phone-{phone}"'):]
    form = section[section.index("<form"):section.index("</form>")]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))


async def sent_an_incident(service: Service) -> list[tuple[str, str]]:
    """Version 1 of an incident, out through the sandbox: (person, phone) of each SMS."""
    async with service.session() as admin:
        resp = await admin.post("/api/incidents", json={"playbook": "broadband-outage", "region": "ningbo"},
                                headers=ADMIN_HEADERS)
        assert resp.status == 201, await resp.text()
        incident_id = (await resp.json())["id"]
    await service.services.outbox.drain()
    await service.sandbox.sms.settled()
    sms = [d for d in await service.services.store.deliveries(incident_id) if d.key.channel == "sms"]
    assert sms
    return [(d.key.person_id, d.address) for d in sms]


async def test_signed_out_the_page_sends_to_the_login(service: Service) -> None:
    async with service.session() as http:
        resp = await http.get("/sandbox/", headers=HTML, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/login?next=%2Fsandbox%2F")
        resp = await http.post("/sandbox/reply", data={"from": "+8613900000001", "to": SANDBOX_SENDER, "body": "1"})
        assert resp.status in (401, 403)
    assert service.sandbox.sms.messages == []


async def test_a_viewer_may_not_see_or_reply(service: Service) -> None:
    async with service.session() as http:
        await sign_in(http, "sun-yue")
        assert (await http.get("/sandbox/", headers=HTML)).status == 403
        assert 'href="/sandbox/"' not in await (await http.get("/", headers=HTML)).text()
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', await (await http.get("/", headers=HTML)).text())
        assert csrf
        resp = await http.post("/sandbox/reply", data={"csrf_token": csrf.group(1), "from": "+8613900000001",
                                                       "to": SANDBOX_SENDER, "body": "1"})
        assert resp.status == 403
    assert service.sandbox.sms.messages == []


async def test_a_trainer_reads_and_replies_as_staff_through_the_inbound_hook(service: Service) -> None:
    sent = await sent_an_incident(service)
    person, phone = sent[0]
    async with service.session() as http:
        await sign_in(http, "zhao-min")
        assert 'href="/sandbox/"' in await (await http.get("/", headers=HTML)).text()  # the nav leads here
        resp = await http.get(f"/sandbox/?who={person}", headers=HTML)  # one person's messages
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
        assert phone in page and "已送达" in page
        form = reply_form(page, phone)
        assert form["from"] == phone and form["to"] == SANDBOX_SENDER and form["csrf_token"] and form["who"] == person
        resp = await http.post("/sandbox/reply", data={**form, "body": "1"}, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == f"/sandbox/?who={person}#phone-{phone}"
        # the sandbox posted it, signed, to the service's own hook, which acknowledged
        [inbound] = [c for c in service.sandbox.sms.callbacks if c.kind == "inbound"]
        assert inbound.url == f"{service.services.settings.base_url}/hooks/twilio/inbound" and inbound.answer == 200
        acks = [a for i in {i.id for i in await service.services.store.list_incidents()}
                for a in await service.services.store.acks(i)]
        assert [(a.person_id, a.via) for a in acks] == [(person, "sms")]
        await service.sandbox.sms.settled()
        page = await (await http.get(f"/sandbox/?who={person}", headers=HTML)).text()
        assert "已确认" in page  # the service's answer, sent back to the phone
        # a number that is not the account's is refused, and text is escaped on the page
        resp = await http.post("/sandbox/reply", data={**form, "to": "+15550009999", "body": "1"})
        assert resp.status == 400
        # a line break in a number is quoted in the error's body, never in its status line
        for field, value in (("to", "x\ny"), ("from", "a\nb")):
            resp = await http.post("/sandbox/reply", data={**form, field: value, "body": "1"}, allow_redirects=False)
            assert resp.status == 400, (field, await resp.text())
            assert (await resp.json())["error"]["code"] == "bad_request"
        await service.sandbox.sms.reply(phone, SANDBOX_SENDER, "<script>alert(1)</script> 收到")
        page = await (await http.get(f"/sandbox/?who={person}", headers=HTML)).text()
        assert "&lt;script&gt;alert(1)&lt;/script&gt; 收到" in page and "<script>alert" not in page


async def test_a_trainers_reply_without_the_csrf_token_is_refused(service: Service) -> None:
    sent = await sent_an_incident(service)
    person, phone = sent[0]
    async with service.session() as http:
        await sign_in(http, "zhao-min")
        form = reply_form(await (await http.get(f"/sandbox/?who={person}", headers=HTML)).text(), phone)
        before = len(service.sandbox.sms.messages)
        for token in (None, "forged"):
            data = {k: v for k, v in form.items() if k != "csrf_token"} | {"body": "1"}
            if token is not None:
                data["csrf_token"] = token
            resp = await http.post("/sandbox/reply", data=data, allow_redirects=False)
            assert resp.status == 403
        assert len(service.sandbox.sms.messages) == before
        assert not [c for c in service.sandbox.sms.callbacks if c.kind == "inbound"]


async def test_without_a_sandbox_there_is_no_page(tmp_path: Path, catalog: Catalog) -> None:
    server = await serve(tmp_path, catalog, sandbox=False)
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url("")),
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await sign_in(http, "zhao-min")
            assert (await http.get("/sandbox/", headers=HTML)).status == 404
            assert (await http.get("/sandbox/", headers=ADMIN_HEADERS)).status == 404
    finally:
        await server.close()
