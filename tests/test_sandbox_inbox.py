"""The sandbox inbox as a trainer reads it (issue 22, item 8): every message with the
person's name from the contacts, in the console's local time, newest first, a page at a
time, and filtered by person or by kind. Against the real sandbox inside the service."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import AsyncIterator

import pytest

from coordinator.clock import ManualClock
from coordinator.config.catalog import Catalog
from coordinator.sandbox.inprocess import SANDBOX_SENDER
from coordinator.web.sandbox_page import PAGE_SIZE, Entry, inbox_page

from .test_sandbox_page import HTML, T0, Service, sent_an_incident, serve, sign_in


@pytest.fixture
async def service(tmp_path: Path, catalog: Catalog) -> AsyncIterator[Service]:
    server = await serve(tmp_path, catalog, sandbox=True)
    try:
        yield Service(server)
    finally:
        await server.close()


def articles(page: str) -> list[str]:
    return re.findall(r"<article class=\"msg[^\"]*\".*?</article>", page, flags=re.S)


async def test_names_local_times_newest_first_filters_and_pages(service: Service) -> None:
    sent = await sent_an_incident(service)
    people = service.services.catalog.contacts.people
    person, phone = sent[0]
    name = people[person].name
    clock = service.services.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(minutes=5))
    await service.sandbox.sms.reply(phone, SANDBOX_SENDER, "收到")
    await service.sandbox.sms.settled()
    total = len(service.sandbox.sms.messages) + sum(len(m) for m in service.sandbox.inbox.mailboxes().values())
    assert total > PAGE_SIZE  # enough for a second page

    async with service.session() as http:
        await sign_in(http, "zhao-min")
        page = await (await http.get("/sandbox/", headers=HTML)).text()
        shown = articles(page)
        assert len(shown) == PAGE_SIZE
        # newest first: the reply, five minutes after the rest, at the console's local time (UTC+8)
        newest = shown[0]
        assert "收到" in newest and name in newest and phone in newest and "inbound" in newest
        local = (T0 + timedelta(minutes=5)).strftime("%Y-%m-%d") + " 10:05:00"
        assert local in newest and "02:05:00" not in page
        assert "Asia/Shanghai" in page
        # every SMS and email carries its person's name, none only a number
        for article in shown:
            assert "通讯录中无此人" not in article, article
            assert any(p.name in article for p in people.values()), article
        # the pages: 20 a page, the next one linked, a page past the end shows the last
        assert 'href="?page=2"' in page and f"第 1 / {-(-total // PAGE_SIZE)} 页" in page
        second = articles(await (await http.get("/sandbox/?page=2", headers=HTML)).text())
        assert second and not set(second) & set(shown)
        pages = -(-total // PAGE_SIZE)
        every = [articles(await (await http.get(f"/sandbox/?page={n}", headers=HTML)).text())
                 for n in range(1, pages + 1)]
        assert sum(len(p) for p in every) == total
        last = articles(await (await http.get("/sandbox/?page=9999", headers=HTML)).text())
        assert last and last == every[-1]
        # filtered by person: their SMS (and the reply) and their email only, and the choice kept
        mine = await (await http.get(f"/sandbox/?who={person}", headers=HTML)).text()
        assert f'<option value="{person}" selected>' in mine
        theirs = articles(mine)
        email = people[person].email
        assert theirs and all(phone in a or (email and email in a) for a in theirs)
        assert len(theirs) == sum(1 for m in service.sandbox.sms.messages if phone in (m.to, m.from_)) + len(
            service.sandbox.inbox.mailboxes().get(email or "", []))
        # by kind
        emails = articles(await (await http.get("/sandbox/?kind=email", headers=HTML)).text())
        assert emails and all('class="msg email' in a for a in emails)
        # in English, the same page in English with the same local times
        english = await (await http.get("/sandbox/?lang=en", headers=HTML)).text()
        assert "newest first" in english and local in english and "Page 1 of" in english


def entry(minute: int, who: str, kind: str = "sms") -> Entry:
    return Entry(T0 + timedelta(minutes=minute), kind, who, who.upper(), f"addr-{who}", False, None)


@pytest.mark.parametrize(("who", "kind", "page", "expect_page", "expect_pages", "first_minute"), [
    ("", "", 1, 1, 3, 44),        # everyone, newest first
    ("", "", 3, 3, 3, 4),         # the last page holds the rest
    ("", "", 99, 3, 3, 4),        # past the end: the last page
    ("", "", 0, 1, 3, 44),        # before the start: the first
    ("b", "", 1, 1, 2, 43),       # one person (23 messages)
    ("", "email", 1, 1, 1, 40),   # one kind
    ("nobody", "", 1, 1, 1, None),
])
def test_a_page_of_the_inbox(who: str, kind: str, page: int, expect_page: int, expect_pages: int,
                             first_minute: int | None) -> None:
    listed = sorted([entry(m, "ab"[m % 2], "email" if m % 10 == 0 else "sms") for m in range(45)],
                    key=lambda e: e.at, reverse=True)
    shown = inbox_page(listed, who=who, kind=kind, page=page)
    assert (shown.page, shown.pages) == (expect_page, expect_pages)
    assert len(shown.entries) <= PAGE_SIZE
    assert (shown.entries[0].at if shown.entries else None) == (
        T0 + timedelta(minutes=first_minute) if first_minute is not None else None)
    assert shown.people == [("a", "A · addr-a"), ("b", "B · addr-b")]
