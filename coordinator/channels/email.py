"""Email through an SMTP relay (aiosmtplib), with a few connections kept open between
sends: a fan-out to hundreds of staff should not log in hundreds of times."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.policy
import functools
import html as html_lib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from coordinator.channels.base import Accepted
from coordinator.clock import Clock, SystemClock
from coordinator.errors import SendError

# Relays drop idle sessions after a while (RFC 5321 suggests 5 minutes, some do it
# sooner); reusing only recently used ones avoids a send waiting on a dead connection.
MAX_IDLE = timedelta(seconds=30)
# A connection used this recently is taken as it is, without a NOOP round trip first:
# in a fan-out that round trip would be a quarter of every send.
FRESH = timedelta(seconds=1)

_UNSAFE_ID_CHAR = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    from_address: str
    message_id_domain: str
    """The service's own domain: right side of each Message-ID, and the EHLO name."""
    from_name: str = "应急指挥中心"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    use_tls: bool = False
    """Implicit TLS (port 465); `starttls` upgrades a plain connection instead."""
    timeout_seconds: float = 30.0
    """Bounds a whole send: connect, log in, MAIL, RCPT and DATA."""
    pool_size: int = 4
    """Connections kept open between sends; 0: a new connection for every send."""

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("SmtpConfig needs both username and password, or neither")
        if self.starttls and self.use_tls:
            raise ValueError("SmtpConfig: starttls and use_tls exclude each other")
        if self.timeout_seconds <= 0 or self.pool_size < 0:
            raise ValueError("SmtpConfig: timeout_seconds must be positive and pool_size at least 0")


def message_id(delivery_id: str, domain: str) -> str:
    """The same Message-ID for every attempt of one delivery, so a retry the relay had
    already taken is recognisably the same email. ':' becomes '.', anything else outside
    [A-Za-z0-9_-] becomes '=XX' per UTF-8 byte (dot-atom safe, and no two ids collide)."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        return "." if char == ":" else "".join(f"={b:02X}" for b in char.encode())

    return f"<{_UNSAFE_ID_CHAR.sub(escape, delivery_id)}@{domain}>"


def with_text_footer(text: str, ack_url: str) -> str:
    return f"{text}\n\n——————\n确认收到：{ack_url}\n"


def with_html_footer(html: str, ack_url: str) -> str:
    """The script's HTML with an acknowledgement button after it, inside <body> when
    there is one."""
    url = html_lib.escape(ack_url, quote=True)
    footer = (
        '<div style="max-width:640px;margin:24px auto 0;padding-top:16px;border-top:1px solid #ddd;'
        'text-align:center;font-family:sans-serif;">'
        f'<a href="{url}" style="display:inline-block;padding:10px 28px;background:#c00;color:#fff;'
        'font-size:16px;font-weight:bold;text-decoration:none;border-radius:4px;">确认收到</a>'
        f'<p style="color:#666;font-size:12px;">如按钮无法点击，请将以下链接复制到浏览器打开：<br>{url}</p>'
        "</div>\n"
    )
    end = html.lower().rfind("</body>")
    return html + footer if end < 0 else html[:end] + footer + html[end:]


def compose_email(
    config: SmtpConfig,
    delivery_id: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    ack_url: str | None,
    now: datetime,
    cte: str = "base64",
) -> EmailMessage:
    """The email of one delivery: the script's text and HTML unchanged, followed by the
    acknowledgement link when there is one; marked automatic so that out-of-office
    replies stay away. `cte`: "base64" passes any relay; "8bit" (a quarter smaller for
    Chinese, and lines as written) needs a relay that announces 8BITMIME."""
    message = EmailMessage()
    # A header cannot hold a line break; a stray one from a template must not stop a fan-out.
    message["Subject"] = " ".join(subject.splitlines())
    message["From"] = Address(display_name=config.from_name, addr_spec=config.from_address)
    message["To"] = to
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(delivery_id, config.message_id_domain)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["X-Coordinator-Delivery"] = delivery_id
    if ack_url is not None:
        text, html = with_text_footer(text, ack_url), with_html_footer(html, ack_url)
    # Quoted-printable would triple Chinese.
    message.set_content(text, charset="utf-8", cte=cte)
    message.add_alternative(html, subtype="html", charset="utf-8", cte=cte)
    return message


# What the fast path writes verbatim: short ASCII header values, plain addresses.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_PLAIN_VALUE = re.compile(r"[\x21-\x7e]+")
_MAX_HEADER = 78


@functools.lru_cache(maxsize=32)
def _fixed_headers(from_name: str, from_address: str, subject: str) -> bytes:
    """Subject and From as the email package encodes and folds them: the same for every
    recipient of a script version, so done once per version."""
    message = EmailMessage()
    message["Subject"] = " ".join(subject.splitlines())
    message["From"] = Address(display_name=from_name, addr_spec=from_address)
    return message.as_bytes(policy=email.policy.SMTP).removesuffix(b"\r\n")


# RFC 5322's limit on a line, CRLF not counted.
MAX_LINE = 998


def _fits_8bit(lines: list[bytes]) -> bool:
    """Whether these lines can go in an 8bit part (RFC 6152): none over MAX_LINE bytes,
    no NUL."""
    return all(len(line) <= MAX_LINE and b"\0" not in line for line in lines)


def _part(subtype: str, lines: list[bytes], cte: str) -> bytes:
    # As the email package's set_content: line breaks normalised, one at the end.
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'.encode()
    if cte == "8bit":
        return head + b"\r\n".join(lines) + b"\r\n"
    return head + base64.encodebytes(b"\n".join(lines) + b"\n").replace(b"\n", b"\r\n")


def render_email(
    config: SmtpConfig,
    delivery_id: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    ack_url: str | None,
    now: datetime,
    eight_bit: bool = False,
) -> bytes:
    """The bytes `compose_email` would give (the same headers and parts, read back
    alike), written directly: the email package takes ~1.7 ms per message, which a
    fan-out to thousands cannot afford. Subject and From are encoded once per version;
    anything unusual (a non-ASCII or long recipient or id) takes the email package.
    `eight_bit` (the relay announced 8BITMIME): the parts go as 8bit UTF-8 when their
    lines fit, else as base64."""
    mid = message_id(delivery_id, config.message_id_domain)
    headers = (("To", to), ("Date", format_datetime(now)), ("Message-ID", mid),
               ("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All"),
               ("X-Coordinator-Delivery", delivery_id))
    if ack_url is not None:
        text, html = with_text_footer(text, ack_url), with_html_footer(html, ack_url)
    text_lines, html_lines = text.encode("utf-8").splitlines(), html.encode("utf-8").splitlines()
    cte = "8bit" if eight_bit and _fits_8bit(text_lines) and _fits_8bit(html_lines) else "base64"
    if not _PLAIN_ADDRESS.fullmatch(to) or any(
        len(name) + 2 + len(value) > _MAX_HEADER or not _PLAIN_VALUE.fullmatch(value.replace(" ", "!"))
        for name, value in headers
    ):
        message = compose_email(config, delivery_id, to, subject, text, html, None, now, cte=cte)
        return message.as_bytes(policy=email.policy.SMTP)
    boundary = f"==============={secrets.randbits(63):019d}=="
    return b"".join((
        _fixed_headers(config.from_name, config.from_address, subject),
        "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii"),
        f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\n".encode("ascii"),
        _part("plain", text_lines, cte),
        f"\r\n--{boundary}\r\n".encode("ascii"),
        _part("html", html_lines, cte),
        f"\r\n--{boundary}--\r\n".encode("ascii"),
    ))


class SmtpEmail:
    """The EmailChannel on an SMTP relay."""

    def __init__(self, config: SmtpConfig, *, clock: Clock | None = None) -> None:
        self._config = config
        self._clock = clock or SystemClock()
        self._idle: list[tuple[aiosmtplib.SMTP, datetime]] = []
        self._closed = False

    async def send_email(
        self, delivery_id: str, to: str, subject: str, text: str, html: str, *, ack_url: str | None
    ) -> Accepted:
        try:
            async with asyncio.timeout(self._config.timeout_seconds):
                smtp = await self._checkout()
                try:
                    eight_bit = smtp.supports_extension("8bitmime")
                    raw = render_email(self._config, delivery_id, to, subject, text, html, ack_url,
                                       self._clock.now(), eight_bit=eight_bit)
                    await _transaction(smtp, self._config.from_address, to, raw, eight_bit=eight_bit)
                except BaseException:
                    smtp.close()
                    raise
                self._checkin(smtp)
        except aiosmtplib.SMTPRecipientRefused as exc:
            reason = f"the server refused {to}: {exc.message}"
            raise _response_error(delivery_id, exc.code, reason, True) from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise _response_error(
                delivery_id, exc.code, f"SMTP login refused, check username and password: {exc.message}", False
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _response_error(delivery_id, exc.code, f"{type(exc).__name__}: {exc.message}", False) from exc
        except TimeoutError as exc:  # aiosmtplib's own timeouts are TimeoutErrors too
            raise SendError(
                delivery_id, "timeout", f"no answer from {self._where} within the timeout", retryable=True
            ) from exc
        except OSError as exc:  # refused, reset, TLS failures; SMTPServerDisconnected too
            raise SendError(delivery_id, "connection", f"cannot talk to {self._where}: {exc}", retryable=True) from exc
        except aiosmtplib.SMTPException as exc:
            # Something the server lacks (AUTH, STARTTLS): the configuration is wrong.
            raise SendError(delivery_id, "smtp-unsupported", f"{self._where}: {exc.message}", retryable=False) from exc
        return Accepted(provider_id=message_id(delivery_id, self._config.message_id_domain), status="sent")

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()
            smtp.close()

    @property
    def _where(self) -> str:
        return f"SMTP server {self._config.host}:{self._config.port}"

    async def _checkout(self) -> aiosmtplib.SMTP:
        """An idle connection that still answers, else a new one."""
        now = self._clock.now()
        while self._idle:
            smtp, since = self._idle.pop()
            if smtp.is_connected and now - since <= MAX_IDLE:
                if now - since <= FRESH:
                    return smtp
                try:
                    await smtp.noop()
                    return smtp
                except (aiosmtplib.SMTPException, OSError):
                    pass  # the server closed it meanwhile
            smtp.close()
        return await self._connect()

    def _checkin(self, smtp: aiosmtplib.SMTP) -> None:
        if self._closed or len(self._idle) >= self._config.pool_size:
            smtp.close()
        else:
            self._idle.append((smtp, self._clock.now()))

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self._config
        smtp = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.use_tls,
            start_tls=config.starttls,  # never opportunistic: what is configured is what happens
            timeout=config.timeout_seconds,
            # socket.getfqdn() can stall for seconds on a host without reverse DNS.
            local_hostname=config.message_id_domain,
        )
        try:
            await smtp.connect()  # logs in too when username and password are set
            if smtp.is_ehlo_or_helo_needed:
                # The extensions (8BITMIME, SIZE) decide the first message's form.
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()
        except BaseException:
            smtp.close()
            raise
        return smtp


async def _transaction(smtp: aiosmtplib.SMTP, sender: str, to: str, raw: bytes, *, eight_bit: bool) -> None:
    """MAIL, RCPT, DATA for one recipient: what `SMTP.sendmail` does, less its second
    line-ending pass over every message to size it (`raw` has CRLF line endings
    already: `render_email` writes them, the email package's SMTP policy too)."""
    options = [f"SIZE={len(raw)}"] if smtp.supports_extension("size") else []
    if eight_bit:
        options.append("BODY=8BITMIME")  # RFC 6152: required before an 8bit body
    try:
        await smtp.mail(sender, options=options)
        await smtp.rcpt(to)
        await smtp.data(raw)
    except aiosmtplib.SMTPResponseException:
        # As sendmail does: clear the envelope, so that the connection can be reused.
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await smtp.rset()
        raise


def _response_error(delivery_id: str, code: int, message: str, about_recipient: bool) -> SendError:
    """4xx is temporary by SMTP's own definition; a 5xx about the recipient means this
    address will not work; any other 5xx is the sender, login or content, the same for
    every recipient."""
    if 400 <= code < 500:
        return SendError(delivery_id, f"smtp-{code}", f"{message}; temporary, retry later", retryable=True)
    if about_recipient:
        return SendError(delivery_id, f"smtp-{code}", message, retryable=False, permanent=True)
    return SendError(delivery_id, f"smtp-{code}", f"{message}; a configuration problem", retryable=False)
