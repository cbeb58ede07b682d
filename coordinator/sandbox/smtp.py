"""An SMTP inbox on loopback: accepts mail like a relay would and keeps each message
in the mailbox of every recipient. No STARTTLS: loopback only."""

from __future__ import annotations

import asyncio
import email
import re
import email.policy
import warnings
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime
from email.message import EmailMessage
from types import TracebackType
from typing import Any, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from coordinator.clock import Clock, SystemClock


@dataclass(frozen=True)
class ReceivedEmail:
    """One email as received. Parsed on first look, not on arrival: a fan-out sends
    thousands, most never read, and parsing each took most of the inbox's time."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    received_at: datetime

    @cached_property
    def message(self) -> EmailMessage:
        """The parsed message, for any other header, e.g. message["Auto-Submitted"]. Read
        with the wire's CRLF as "\n", as a mailbox stores it: an 8bit part's text would
        otherwise keep the "\r"."""
        return cast(EmailMessage, email.message_from_bytes(self.raw.replace(b"\r\n", b"\n"),
                                                           policy=email.policy.default))

    @property
    def subject(self) -> str:
        """Decoded (RFC 2047), so Chinese subjects read as sent."""
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str | None:
        """The text/plain body, if any."""
        return self._body("plain")

    @property
    def html(self) -> str | None:
        """The text/html body, if any."""
        return self._body("html")

    @property
    def message_id(self) -> str | None:
        found = self.message.get("Message-ID")
        return None if found is None else str(found)

    def _body(self, subtype: str) -> str | None:
        part = self.message.get_body(preferencelist=(subtype,))
        return cast(EmailMessage, part).get_content() if part is not None else None

# `<local@domain>` with a plain dot-atom on each side, and what follows it.
_PLAIN_PATH = re.compile(r"\s*<([A-Za-z0-9_+=-]+(?:\.[A-Za-z0-9_+=-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>\s*(.*)", re.S)


class _Smtp(SMTP):
    """aiosmtpd's server, reading a plain `<local@domain>` in MAIL FROM / RCPT TO with a
    regular expression: its RFC 5322 header parser took a tenth of the provider process
    in a fan-out. Anything else still goes through that parser."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN_PATH.fullmatch(arg)
        if plain is None:
            return super()._getaddr(arg)
        address, rest = plain.group(1), plain.group(2)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest


class SmtpInbox:
    """SMTP server keeping what it receives; with `user` and `password` it requires AUTH
    (PLAIN or LOGIN, allowed without TLS since it listens on loopback)."""

    def __init__(self, *, user: str | None = None, password: str | None = None, clock: Clock | None = None) -> None:
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        self._credentials = (user, password) if user is not None else None
        self._clock = clock or SystemClock()
        self._mailboxes: dict[str, list[ReceivedEmail]] = {}
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0 picks a free port) in the running event loop."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._connection, host, port)
        bound_host, bound_port = self._server.sockets[0].getsockname()[:2]
        self._address = (bound_host, bound_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to hand to an SMTP client."""
        if self._address is None:
            raise RuntimeError("the inbox is not started")
        return self._address

    async def __aenter__(self) -> SmtpInbox:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def forget(self) -> None:
        """Empty every mailbox (a test or a trainer starting over)."""
        self._mailboxes.clear()

    def mailbox(self, address: str) -> list[ReceivedEmail]:
        """What `address` received, oldest first (addresses compare case-insensitively)."""
        return list(self._mailboxes.get(address.lower(), []))

    def mailboxes(self) -> dict[str, list[ReceivedEmail]]:
        return {address: list(emails) for address, emails in self._mailboxes.items()}

    def _connection(self) -> SMTP:
        with warnings.catch_warnings():
            # aiosmtpd warns that AUTH without TLS exposes passwords; not on loopback.
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            return _Smtp(
                self,
                hostname="sandbox.localhost",
                enable_SMTPUTF8=True,
                auth_required=self._credentials is not None,
                # Without TLS, aiosmtpd advertises AUTH only when this is False: so an
                # inbox without credentials offers no AUTH, like a relay that needs none.
                auth_require_tls=self._credentials is None,
                authenticator=self._authenticate,
                loop=asyncio.get_running_loop(),
            )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if (
            self._credentials is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self._credentials
        ):
            return AuthResult(success=True)
        # handled=False lets aiosmtpd answer 535 at once; handled=True would leave the
        # client waiting for a reply until its timeout.
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        rcpt_tos = tuple(envelope.rcpt_tos)
        received = ReceivedEmail(envelope.mail_from or "", rcpt_tos, raw, self._clock.now())
        for address in rcpt_tos:
            self._mailboxes.setdefault(address.lower(), []).append(received)
        return "250 Message accepted for delivery"
