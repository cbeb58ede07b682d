"""The SMTP inbox, fed by aiosmtplib over loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import aiosmtplib
import pytest

from coordinator.clock import ManualClock
from coordinator.sandbox import SmtpInbox

SUBJECT = "【应急】杭州宽带故障统一解释口径 v1"
TEXT = "各位同事：\n杭州部分小区宽带中断，预计 18:00 前恢复。请按口径答复客户。\n"
HTML = "<p>各位同事：</p><p>杭州部分小区宽带中断，预计 <b>18:00</b> 前恢复。</p>"

MakeInbox = Callable[..., Awaitable[SmtpInbox]]


@pytest.fixture
async def make_inbox() -> AsyncIterator[MakeInbox]:
    started: list[SmtpInbox] = []

    async def make(**options: Any) -> SmtpInbox:
        inbox = SmtpInbox(**options)
        await inbox.start()
        started.append(inbox)
        return inbox

    yield make
    for inbox in started:
        await inbox.stop()


def official_script(*recipients: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "应急协调 <coordinator@example.com>"
    message["To"] = ", ".join(recipients)
    message["Subject"] = SUBJECT
    message["Message-ID"] = make_msgid(domain="coordinator.example.com")
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    return message


async def test_multipart_chinese_message_is_kept_per_recipient(make_inbox: MakeInbox) -> None:
    clock = ManualClock(datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc))
    inbox = await make_inbox(clock=clock)
    message = official_script("li.na@example.com", "Wang.Wei@example.com")
    host, port = inbox.address
    await aiosmtplib.send(message, hostname=host, port=port)

    (for_li,) = inbox.mailbox("li.na@example.com")
    (for_wang,) = inbox.mailbox("wang.wei@EXAMPLE.com")
    assert for_li is for_wang
    assert for_li.subject == SUBJECT
    assert for_li.text == TEXT
    assert for_li.html is not None and for_li.html.strip() == HTML
    assert for_li.message_id == message["Message-ID"]
    assert for_li.message["Auto-Submitted"] == "auto-generated"
    assert for_li.mail_from == "coordinator@example.com"
    assert set(for_li.rcpt_tos) == {"li.na@example.com", "Wang.Wei@example.com"}
    assert for_li.received_at == clock.now()
    assert set(inbox.mailboxes()) == {"li.na@example.com", "wang.wei@example.com"}
    assert inbox.mailbox("nobody@example.com") == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_accepts_the_configured_user(make_inbox: MakeInbox, mechanism: str) -> None:
    inbox = await make_inbox(user="coordinator", password="s3cret")
    host, port = inbox.address
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False) as smtp:
        await smtp.ehlo()
        login = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        await login("coordinator", "s3cret")
        await smtp.send_message(official_script("li.na@example.com"))
    (received,) = inbox.mailbox("li.na@example.com")
    assert received.subject == SUBJECT


async def test_wrong_password_is_refused_at_once(make_inbox: MakeInbox) -> None:
    inbox = await make_inbox(user="coordinator", password="s3cret")
    host, port = inbox.address
    began = time.monotonic()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as raised:
        await aiosmtplib.send(
            official_script("li.na@example.com"),
            hostname=host, port=port, username="coordinator", password="wrong", start_tls=False, timeout=10,
        )
    assert raised.value.code == 535
    assert time.monotonic() - began < 2  # not the client's 10-second timeout
    assert inbox.mailboxes() == {}


async def test_mail_without_auth_is_refused_when_auth_is_configured(make_inbox: MakeInbox) -> None:
    inbox = await make_inbox(user="coordinator", password="s3cret")
    host, port = inbox.address
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as raised:
        await aiosmtplib.send(official_script("li.na@example.com"), hostname=host, port=port, start_tls=False)
    assert raised.value.code == 530
    assert inbox.mailboxes() == {}


async def test_inbox_without_credentials_offers_no_auth(make_inbox: MakeInbox) -> None:
    inbox = await make_inbox()
    host, port = inbox.address
    with pytest.raises(aiosmtplib.SMTPException, match="AUTH"):
        await aiosmtplib.send(
            official_script("li.na@example.com"), hostname=host, port=port, username="u", password="p", start_tls=False
        )
    assert inbox.mailboxes() == {}


def test_user_and_password_come_together() -> None:
    with pytest.raises(ValueError):
        SmtpInbox(user="coordinator")


@pytest.mark.parametrize("arg", [
    "<bench-00001@example.com> SIZE=1234 BODY=8BITMIME", "<a@b.c>", " <x.y+z@d-e.com>", "<a..b@c.d>",
    '<"q r"@d.com>', "<>", "a@b.c", "<a@b.c", "<Chen Li <a@b.c>>",
])
async def test_envelope_addresses_read_as_aiosmtpd_reads_them(arg: str) -> None:
    from aiosmtpd.smtp import SMTP

    from coordinator.sandbox.smtp import _Smtp

    handler = object()
    assert _Smtp(handler)._getaddr(arg) == SMTP(handler)._getaddr(arg)
