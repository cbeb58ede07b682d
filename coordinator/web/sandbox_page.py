"""The sandbox page, for trainers, when the service runs its own sandbox (`serve
--sandbox`): what each staff phone and mailbox received, and a form to reply to an SMS
as the staff member holding that phone. Behind the console's login and its CSRF check:
a reply acknowledges as that person, so it is a trainer's act, not anyone's who can
reach a port (the sandbox's own port serves only its Messages API).

    GET  /sandbox/        the page (trainer): every SMS and email, newest first, with the
                          person's name (from the contacts) and the console's local time;
                          `?who=PERSON` (a person's id, or an address no contact has),
                          `?kind=sms|email`, `?page=N` (PAGE_SIZE a page)
    POST /sandbox/reply   `from`, `to`, `body`: the phone's reply, through the sandbox to
                          this service's inbound hook as Twilio would post it (trainer)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from ..config.catalog import Contacts
from ..config.users import Role
from ..sandbox.inprocess import RunningSandbox
from .api import bad_request
from .auth import CSRF_FIELD, csrf_token, requires
from .i18n import MESSAGES
from .page import console_page, tr
from .state import SANDBOX, SERVICES

routes = web.RouteTableDef()

PAGE_SIZE = 20
KINDS = ("sms", "email")


@dataclass(frozen=True)
class Entry:
    """One message as the page lists it. `who` is the person's id, or the address when no
    contact has it; `reply_to` the service's number a reply goes to (outbound SMS only)."""

    at: datetime
    kind: str  # sms | email
    who: str
    name: str
    address: str
    inbound: bool
    message: Any  # the sandbox's SMS message or ReceivedEmail: read on its page only
    reply_to: str | None = None


@dataclass(frozen=True)
class InboxPage:
    entries: list[Entry]
    people: list[tuple[str, str]]  # (who, label) of everyone with a message, by name
    page: int
    pages: int
    total: int


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


class AddressBook:
    """Whose phone or mailbox an address is, from the contacts."""

    def __init__(self, contacts: Contacts) -> None:
        self.by_phone = {_digits(n): p for p in contacts.people.values() for n in p.numbers}  # every phone of theirs
        self.by_email = {p.email.lower(): p for p in contacts.people.values() if p.email}

    def person(self, kind: str, address: str) -> tuple[str, str]:
        found = self.by_phone.get(_digits(address)) if kind == "sms" else self.by_email.get(address.lower())
        return (found.id, found.name) if found is not None else (address, "")


def entries(threads: Mapping[str, Iterable[Any]], mailboxes: Mapping[str, Iterable[Any]],
            book: AddressBook) -> list[Entry]:
    """Every message, newest first (an SMS's time is when the sandbox took it)."""
    out: list[Entry] = []
    for phone, messages in threads.items():
        who, name = book.person("sms", phone)
        for m in messages:
            inbound = m.direction == "inbound"
            out.append(Entry(m.date_created, "sms", who, name, phone, inbound, m,
                             None if inbound else m.from_))
    for address, emails in mailboxes.items():
        who, name = book.person("email", address)
        out.extend(Entry(e.received_at, "email", who, name, address, False, e) for e in emails)
    out.sort(key=lambda e: e.at, reverse=True)
    return out


def inbox_page(all_entries: list[Entry], *, who: str, kind: str, page: int) -> InboxPage:
    """One page of the entries for the person and kind asked for (empty: everyone, both)."""
    people = sorted({(e.who, f"{e.name} · {e.address}" if e.name else e.address) for e in all_entries},
                    key=lambda p: p[1])
    chosen = [e for e in all_entries if (not who or e.who == who) and (not kind or e.kind == kind)]
    pages = max(1, math.ceil(len(chosen) / PAGE_SIZE))
    page = min(max(1, page), pages)
    return InboxPage(chosen[(page - 1) * PAGE_SIZE:page * PAGE_SIZE], people, page, pages, len(chosen))


def _sandbox(request: web.Request) -> RunningSandbox:
    sandbox = request.app.get(SANDBOX)
    if sandbox is None:
        raise web.HTTPNotFound(reason="this service runs no sandbox")
    return sandbox


def _page_number(value: str) -> int:
    return int(value) if value.isdigit() and len(value) < 7 else 1


@routes.get("/sandbox/")
@requires(Role.trainer)
@console_page
async def sandbox_page(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    services = request.app[SERVICES]
    who = request.query.get("who", "")
    kind = request.query.get("kind", "")
    kind = kind if kind in KINDS else ""
    listed = entries(sandbox.sms.threads(), sandbox.inbox.mailboxes(), AddressBook(services.catalog.contacts))
    shown = inbox_page(listed, who=who, kind=kind, page=_page_number(request.query.get("page", "1")))
    tz = ZoneInfo(services.settings.timezone)

    def link(page: int) -> str:
        return "?" + urlencode([(k, v) for k, v in (("who", who), ("kind", kind), ("page", str(page))) if v])

    anchored: set[str] = set()
    firsts = []  # the first outbound SMS of each phone on the page carries its #phone- anchor
    for e in shown.entries:
        first = e.kind == "sms" and e.reply_to is not None and e.address not in anchored
        if first:
            anchored.add(e.address)
        firsts.append(first)
    t = tr(request)
    return aiohttp_jinja2.render_template("sandbox.html", request, {
        "t": t, "csrf": await csrf_token(request), "csrf_field": CSRF_FIELD,
        "counts": sandbox.sms.counts(), "inbox": shown, "rows": list(zip(shown.entries, firsts)),
        "who": who, "kind": kind, "link": link, "tz_name": services.settings.timezone,
        "local": lambda at: at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
        "iso": lambda at: at.astimezone(tz).isoformat(timespec="seconds"),
        "status": lambda s: t(f"sandbox.status.{s}") if f"sandbox.status.{s}" in MESSAGES else s,
    })


@routes.post("/sandbox/reply")
@requires(Role.trainer)
async def sandbox_reply(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    form = await request.post()
    from_, to, body = (str(form.get(name, "")) for name in ("from", "to", "body"))
    if not body:
        raise bad_request("bad_request", "body is required", [{"parameter": "body", "problem": "required"}])
    try:
        await sandbox.sms.reply(from_, to, body)
    except ValueError as exc:  # not a number of the account, not E.164
        raise bad_request("bad_request", str(exc),  # it quotes the numbers
                          [{"parameter": "from_phone", "value": from_, "problem": "bad_number"}]) from exc
    who = str(form.get("who", ""))
    raise web.HTTPSeeOther("/sandbox/" + (f"?{urlencode({'who': who})}" if who else "") + f"#phone-{from_}")
