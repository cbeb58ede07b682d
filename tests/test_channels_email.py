"""SmtpEmail against real SMTP servers on loopback: the sandbox's SmtpInbox, and a tiny
aiosmtpd relay whose answers each test chooses."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from coordinator.channels import EmailChannel, SmtpConfig, SmtpEmail
from coordinator.channels.email import (
    compose_email,
    message_id,
    render_email,
    with_html_footer,
)
from coordinator.clock import ManualClock
from coordinator.errors import SendError
from coordinator.sandbox import SmtpInbox
from coordinator.commands.sandboxed import free_port

DELIVERY = "INC-20261124-3f9a2c:2:chen-li:email"
STAFF = "chen.li@example.com"
ACK_URL = "https://coordinator.example.com/ack/eyJkIjoiSU5DIn0.c2ln?x=1&y=2"
SUBJECT = "【统一解释口径 v2】杭州西湖区移动网络故障（重大）"
SCRIPT_TEXT = (
    "各营业厅、热线坐席及客户经理同事：\n\n"
    "杭州西湖区移动网络出现故障，现下发统一解释口径，请即时起对客统一使用。\n"
    "  1. 首先致歉：“非常抱歉给您带来不便。”\n"
    "口径版本 v2"
)
SCRIPT_HTML = (
    '<!DOCTYPE html>\n<html lang="zh-CN">\n<head><meta charset="utf-8"></head>\n'
    "<body><h1>杭州西湖区移动网络故障：统一解释口径</h1>\n<p>首先致歉：“非常抱歉给您带来不便。”</p>\n"
    "</body>\n</html>"
)


def config_for(address: tuple[str, int], **overrides: Any) -> SmtpConfig:
    host, port = address
    settings: dict[str, Any] = {
        "host": host,
        "port": port,
        "from_address": "coordinator@example.com",
        "message_id_domain": "coordinator.example.com",
        "timeout_seconds": 2.0,
        **overrides,
    }
    return SmtpConfig(**settings)


async def send(
    channel: EmailChannel, to: str = STAFF, delivery_id: str = DELIVERY, ack_url: str | None = ACK_URL
) -> str:
    accepted = await channel.send_email(delivery_id, to, SUBJECT, SCRIPT_TEXT, SCRIPT_HTML, ack_url=ack_url)
    assert accepted.status == "sent"
    return accepted.provider_id


async def send_error(channel: EmailChannel, to: str = STAFF) -> SendError:
    with pytest.raises(SendError) as caught:
        await send(channel, to)
    assert caught.value.delivery_id == DELIVERY
    return caught.value


class Relay:
    """An SMTP relay answering RCPT for some addresses as told, keeping each connection
    so a test can count them or cut them."""

    def __init__(self, answers: dict[str, str] | None = None, *, eight_bit: bool = True) -> None:
        self.answers = answers or {}
        self.eight_bit = eight_bit
        self.connections: list[SMTP] = []
        self.delivered: list[str] = []
        self.envelopes: list[Envelope] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.get_running_loop().create_server(self._connect, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[:2]  # type: ignore[no-any-return]

    async def stop(self) -> None:
        assert self._server is not None
        self.cut()
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.close()

    def _connect(self) -> SMTP:
        # aiosmtpd announces 8BITMIME unless it decodes the data as text.
        connection = SMTP(self, hostname="relay.localhost", loop=asyncio.get_running_loop(),
                          decode_data=not self.eight_bit)
        self.connections.append(connection)
        return connection

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.answers:
            return self.answers[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.delivered.extend(envelope.rcpt_tos)
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
async def inbox() -> AsyncIterator[SmtpInbox]:
    async with SmtpInbox() as started:
        yield started


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    started = Relay()
    yield started
    await started.stop()


# -- what arrives -------------------------------------------------------------------------


async def test_the_script_arrives_whole_with_the_ack_link_after_it(inbox: SmtpInbox, clock: ManualClock) -> None:
    channel = SmtpEmail(config_for(inbox.address), clock=clock)
    provider_id = await send(channel)
    await channel.close()

    [received] = inbox.mailbox(STAFF)
    assert received.subject == SUBJECT
    assert received.message.get_content_type() == "multipart/alternative"
    assert received.text is not None and received.html is not None
    footer_at = received.text.index("确认收到：" + ACK_URL)
    assert received.text[:footer_at].rstrip("\n—") == SCRIPT_TEXT
    body_end = SCRIPT_HTML.index("</body>")
    assert received.html.startswith(SCRIPT_HTML[:body_end])
    assert received.html.endswith(SCRIPT_HTML[body_end:] + "\n")
    assert 'href="https://coordinator.example.com/ack/eyJkIjoiSU5DIn0.c2ln?x=1&amp;y=2"' in received.html

    headers = received.message
    assert received.message_id == provider_id == "<INC-20261124-3f9a2c.2.chen-li.email@coordinator.example.com>"
    sender = headers["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("应急指挥中心", "coordinator@example.com")
    assert headers["To"] == STAFF
    assert parsedate_to_datetime(headers["Date"]) == clock.now()
    assert headers["Auto-Submitted"] == "auto-generated"
    assert headers["X-Auto-Response-Suppress"] == "All"
    assert headers["X-Coordinator-Delivery"] == DELIVERY


async def test_without_an_ack_link_the_parts_are_the_script_alone(inbox: SmtpInbox) -> None:
    channel = SmtpEmail(config_for(inbox.address))
    await send(channel, ack_url=None)
    await channel.close()

    [received] = inbox.mailbox(STAFF)
    assert received.text == SCRIPT_TEXT + "\n"  # MIME ends a text part with a newline
    assert received.html == SCRIPT_HTML + "\n"


def parts(raw: bytes) -> list[tuple[str, str, str]]:
    message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
    return [(p.get_content_type(), p["Content-Transfer-Encoding"], p.get_content()) for p in message.iter_parts()]


async def test_a_relay_with_8bitmime_gets_the_parts_as_8bit_from_the_first_message(relay: Relay) -> None:
    channel = SmtpEmail(config_for(await relay.start()))
    await send(channel)  # on a fresh connection: the extensions are known before MAIL
    await channel.close()

    [envelope] = relay.envelopes
    assert "BODY=8BITMIME" in envelope.mail_options
    raw = envelope.original_content
    assert raw is not None and SCRIPT_TEXT.splitlines()[0].encode() in raw  # as written, not encoded
    [(_, text_cte, text), (_, html_cte, html)] = parts(raw)
    assert (text_cte, html_cte) == ("8bit", "8bit")
    assert text.startswith(SCRIPT_TEXT + "\n") and ACK_URL in text
    assert html.startswith(SCRIPT_HTML[:SCRIPT_HTML.index("</body>")])


async def test_a_relay_without_8bitmime_gets_base64_and_no_body_parameter() -> None:
    relay = Relay(eight_bit=False)
    channel = SmtpEmail(config_for(await relay.start()))
    try:
        await send(channel)
    finally:
        await channel.close()
        await relay.stop()

    [envelope] = relay.envelopes
    assert not any(o.upper().startswith("BODY=") for o in envelope.mail_options)
    raw = envelope.original_content
    assert raw is not None and max(raw) < 0x80  # 7-bit clean
    assert [cte for _, cte, _ in parts(raw)] == ["base64", "base64"]


async def test_a_line_too_long_for_8bit_sends_the_parts_as_base64(relay: Relay) -> None:
    channel = SmtpEmail(config_for(await relay.start()))
    long_html = "<p>" + "口径" * 200 + "</p>"  # 1,207 bytes on one line: over SMTP's 998
    await channel.send_email(DELIVERY, STAFF, SUBJECT, SCRIPT_TEXT, long_html, ack_url=ACK_URL)
    await channel.close()

    [envelope] = relay.envelopes
    raw = envelope.original_content
    assert raw is not None and max(len(line) for line in raw.split(b"\r\n")) <= 998
    [(_, text_cte, _), (_, html_cte, html)] = parts(raw)
    assert (text_cte, html_cte) == ("base64", "base64") and html.startswith(long_html)


async def test_each_delivery_keeps_its_message_id_across_attempts(inbox: SmtpInbox) -> None:
    channel = SmtpEmail(config_for(inbox.address))
    first = await send(channel)
    again = await send(channel)
    other = await send(channel, delivery_id="INC-20261124-3f9a2c:3:chen-li:email")
    await channel.close()

    assert first == again != other
    assert [m.message_id for m in inbox.mailbox(STAFF)] == [first, again, other]


async def test_login_when_the_server_requires_it() -> None:
    async with SmtpInbox(user="coordinator", password="secret") as inbox:
        channel = SmtpEmail(config_for(inbox.address, username="coordinator", password="secret"))
        await send(channel)
        await channel.close()

        assert len(inbox.mailbox(STAFF)) == 1


# -- refusals and failures ------------------------------------------------------------------


async def test_wrong_password_is_a_configuration_problem() -> None:
    async with SmtpInbox(user="coordinator", password="secret") as inbox:
        channel = SmtpEmail(config_for(inbox.address, username="coordinator", password="wrong"))
        error = await send_error(channel)
        await channel.close()

    assert (error.code, error.retryable, error.permanent) == ("smtp-535", False, False)
    assert "password" in error.message


async def test_credentials_for_a_server_without_auth_are_a_configuration_problem(inbox: SmtpInbox) -> None:
    channel = SmtpEmail(config_for(inbox.address, username="coordinator", password="secret"))
    error = await send_error(channel)
    await channel.close()

    assert (error.code, error.retryable, error.permanent) == ("smtp-unsupported", False, False)


@pytest.mark.parametrize(
    ("answer", "code", "retryable", "permanent"),
    [
        ("550 5.1.1 No such user", "smtp-550", False, True),
        ("553 5.1.3 Bad destination mailbox address", "smtp-553", False, True),
        ("450 4.2.1 Mailbox busy", "smtp-450", True, False),
        ("451 4.3.0 Try again later", "smtp-451", True, False),
    ],
)
async def test_refused_recipient(relay: Relay, answer: str, code: str, retryable: bool, permanent: bool) -> None:
    relay.answers[STAFF] = answer
    channel = SmtpEmail(config_for(await relay.start()))
    error = await send_error(channel)
    await channel.close()

    assert (error.code, error.retryable, error.permanent) == (code, retryable, permanent)
    assert relay.delivered == []


async def test_server_down_is_retryable() -> None:
    channel = SmtpEmail(config_for(("127.0.0.1", free_port())))
    error = await send_error(channel)
    await channel.close()

    assert (error.code, error.retryable, error.permanent) == ("connection", True, False)


async def test_a_server_that_never_answers_times_out_retryably() -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # connected, but no greeting ever comes

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    channel = SmtpEmail(config_for(server.sockets[0].getsockname()[:2], timeout_seconds=0.3))
    try:
        error = await send_error(channel)
    finally:
        await channel.close()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()

    assert (error.code, error.retryable) == ("timeout", True)


# -- connections ---------------------------------------------------------------------------


async def test_connections_are_reused_and_replaced_when_the_server_cut_them(relay: Relay) -> None:
    channel = SmtpEmail(config_for(await relay.start()))
    await send(channel)
    await send(channel)
    assert len(relay.connections) == 1

    relay.cut()
    await asyncio.sleep(0.05)  # let the client see the connection go
    await send(channel)
    await channel.close()

    assert len(relay.connections) == 2
    assert relay.delivered == [STAFF] * 3


async def test_pool_size_zero_opens_a_connection_per_send(relay: Relay) -> None:
    channel = SmtpEmail(config_for(await relay.start(), pool_size=0))
    await send(channel)
    await send(channel)
    await channel.close()

    assert len(relay.connections) == 2


# -- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delivery_id", "expected"),
    [
        ("INC-20261124-3f9a2c:2:chen-li:email", "<INC-20261124-3f9a2c.2.chen-li.email@d.example>"),
        ("INC-1:2:chen.li:email", "<INC-1.2.chen=2Eli.email@d.example>"),
        ("INC-1:2:陈立:email", "<INC-1.2.=E9=99=88=E7=AB=8B.email@d.example>"),
        ("INC-1:2:a b<>@:email", "<INC-1.2.a=20b=3C=3E=40.email@d.example>"),
    ],
)
def test_message_id_is_a_safe_and_distinct_form_of_the_delivery_id(delivery_id: str, expected: str) -> None:
    assert message_id(delivery_id, "d.example") == expected


def test_a_line_break_in_the_subject_is_folded_away(clock: ManualClock) -> None:
    config = config_for(("127.0.0.1", 25))
    message = compose_email(config, DELIVERY, STAFF, "口径 v2\n（重大）\n", "t", "<p>h</p>", None, clock.now())
    assert message["Subject"] == "口径 v2 （重大）"


@pytest.mark.parametrize(
    ("delivery_id", "to", "ack_url", "text"),
    [
        (DELIVERY, STAFF, ACK_URL, SCRIPT_TEXT),
        (DELIVERY, STAFF, None, SCRIPT_TEXT + "\r\nCRLF\r\n"),
        ("INC-1:2:陈立:email", STAFF, ACK_URL, SCRIPT_TEXT),  # non-ASCII id: the email package's way
        (DELIVERY, "Chen Li <chen.li@example.com>", ACK_URL, SCRIPT_TEXT),
        ("INC-20261124-3f9a2c:12:" + "x" * 60 + ":email", STAFF, ACK_URL, SCRIPT_TEXT),  # too long to write as is
    ],
)
@pytest.mark.parametrize("eight_bit", [False, True])
def test_the_fast_rendering_reads_back_as_the_email_packages(
    clock: ManualClock, delivery_id: str, to: str, ack_url: str | None, text: str, eight_bit: bool
) -> None:
    config = config_for(("127.0.0.1", 25))
    args = (config, delivery_id, to, SUBJECT + "\n第二行", text, SCRIPT_HTML, ack_url, clock.now())
    fast = email.message_from_bytes(render_email(*args, eight_bit=eight_bit), policy=email.policy.default)
    slow = email.message_from_bytes(
        compose_email(*args, cte="8bit" if eight_bit else "base64").as_bytes(policy=email.policy.SMTP),
        policy=email.policy.default)

    def read(message: Any) -> list[Any]:
        parts = [(p.get_content_type(), p["Content-Transfer-Encoding"], p.get_content())
                 for p in message.iter_parts()]
        headers = [(k, str(v)) for k, v in message.items() if k != "Content-Type"]
        return [headers, message.get_content_type(), parts]

    assert read(fast) == read(slow)
    assert {p["Content-Transfer-Encoding"] for p in fast.iter_parts()} == {"8bit" if eight_bit else "base64"}
    # SMTP's line limit
    assert max(len(line) for line in render_email(*args, eight_bit=eight_bit).split(b"\r\n")) <= 998


def test_html_without_a_body_tag_gets_the_button_at_the_end() -> None:
    html = "<p>口径</p>"
    assert with_html_footer(html, ACK_URL).startswith(html + "<div")


@pytest.mark.parametrize(
    "overrides",
    [
        {"username": "u"},
        {"password": "p"},
        {"starttls": True, "use_tls": True},
        {"timeout_seconds": 0},
        {"pool_size": -1},
    ],
)
def test_config_is_validated(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        config_for(("127.0.0.1", 25), **overrides)


def test_config_repr_hides_the_password() -> None:
    assert "secret" not in repr(config_for(("127.0.0.1", 25), username="u", password="secret"))
