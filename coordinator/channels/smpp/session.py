"""The ESME side of an SMPP 3.4 session: bound as a transceiver, kept alive with
enquire_link, bound again with back-off when the connection goes, at most `window`
requests outstanding, and paused with back-off when the SMSC throttles.

It only speaks SMPP: what a deliver_sm means (a receipt, a reply) and what a failure
means for a delivery are the channel's business (channel.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from coordinator.errors import SmppBindFailed, SmppInDoubt, SmppNotSent, SmppRefused

from .bodies import Bind, BindResp, MessageIdResp, QueryResp, QuerySm, ShortMessage
from .config import SmppConfig
from .link import Link
from .pacing import Pacing
from .pdu import (
    INTERFACE_VERSION,
    Command,
    InvalidPdu,
    Pdu,
    Status,
    read_pdu,
    status_name,
)

log = logging.getLogger("coordinator.channels.smpp")

# The SMSC is busy, not refusing: the same submit_sm may be sent again after a pause.
THROTTLING = frozenset({Status.ESME_RTHROTTLED, Status.ESME_RMSGQFUL})

Deliver = Callable[[ShortMessage], Awaitable[None]]


@dataclass
class SessionStats:
    binds: int = 0
    connections_lost: int = 0
    enquire_links: int = 0
    """enquire_link requests the SMSC answered."""
    unbinds_received: int = 0
    throttled: int = 0
    pace: float = 0.0
    """Requests per second the session holds itself to since the SMSC throttled it (0: none)."""


class EsmeSession:
    """`on_deliver` gets each deliver_sm; the SMSC is answered ESME_ROK when it returns,
    ESME_RX_T_APPN (try again later) when it raises. Create anywhere; `start()` inside
    the running loop (the first request starts it too); `close()` unbinds."""

    def __init__(self, config: SmppConfig, *, on_deliver: Deliver) -> None:
        self._config = config
        self._on_deliver = on_deliver
        self._window = asyncio.Semaphore(config.window)
        self._changed = asyncio.Event()
        self._link: Link | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._delivering: set[asyncio.Task[None]] = set()
        self._closing = False
        self._problem = "not connected yet"
        self._bind_refused: int | None = None
        self._pacing = Pacing(min_pause=config.throttle_min_seconds, max_pause=config.throttle_max_seconds)
        self.supports_tlvs = False
        """The SMSC's bind_resp announced SMPP 3.4 TLVs (sc_interface_version 0x34)."""
        self.stats = SessionStats()

    def start(self) -> None:
        if self._keeper is None and not self._closing:
            self._keeper = asyncio.create_task(self._keep(), name="smpp-session")

    @property
    def bound(self) -> bool:
        return self._link is not None and self._link.lost is None

    async def ready(self) -> None:
        """Returns once bound (waiting up to connect_timeout). Raises SmppNotSent, SmppBindFailed."""
        await self._ready()

    async def submit(self, message: ShortMessage) -> str:
        """The SMSC's message id for `message`. Throttled, it is tried again after a
        pause, up to throttle_attempts in all. Raises SmppNotSent, SmppInDoubt, SmppRefused, SmppBindFailed."""
        attempts = self._config.throttle_attempts
        body = message.encode()
        for attempt in range(1, attempts + 1):
            pdu, sent_in = await self._request(Command.submit_sm, body)
            loop = asyncio.get_running_loop()
            if pdu.command == Command.submit_sm_resp and pdu.status == Status.ESME_ROK:
                self._pacing.accepted(loop.time())
                return _message_id(pdu.body)
            if pdu.status in THROTTLING:
                self.stats.throttled += 1
                self._pacing.throttled(loop.time(), sent_in)
                self.stats.pace = self._pacing.rate or 0.0
                if attempt < attempts:
                    log.info("smpp: submit_sm throttled (%s), try %d of %d", status_name(pdu.status), attempt, attempts)
                    continue
            raise SmppRefused(pdu.status, nack=pdu.command == Command.generic_nack)
        raise AssertionError("unreachable")

    async def query(self, query: QuerySm) -> QueryResp:
        """The SMSC's state of a message. Raises SmppNotSent, SmppInDoubt, SmppRefused (an SMSC
        without query_sm answers ESME_RQUERYFAIL, ESME_RINVCMDID or a generic_nack)."""
        pdu, _ = await self._request(Command.query_sm, query.encode())
        if pdu.command != Command.query_sm_resp or pdu.status != Status.ESME_ROK:
            raise SmppRefused(pdu.status, nack=pdu.command == Command.generic_nack)
        return QueryResp.decode(pdu.body)

    async def close(self) -> None:
        """Unbinds (briefly waiting for the answer), ends the connection, and waits for
        the deliver_sm still being handled."""
        self._closing = True
        self._notify()
        if self._link is not None and self._link.lost is None:
            with contextlib.suppress(SmppNotSent, SmppInDoubt):
                await self._link.request(Command.unbind, b"", min(self._config.response_timeout_seconds, 2.0))
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self._delivering:
            await asyncio.gather(*self._delivering, return_exceptions=True)

    async def _request(self, command: int, body: bytes) -> tuple[Pdu, int]:
        """The answer, and the pacing's epoch in which the request was written."""
        loop = asyncio.get_running_loop()
        # A place in the pacing first (at once unless the SMSC throttled us), then one in
        # the window: the window counts requests on the wire, not those waiting their
        # turn (holding it while paced cut a 500/s pace to ~350/s once answers slowed).
        # A pause begun meanwhile sends the request back for a new place.
        while True:
            epoch, schedule = self._pacing.epoch, self._pacing.schedule
            if wait := self._pacing.book(loop.time()):
                await asyncio.sleep(wait)
                if self._pacing.schedule != schedule:
                    continue
            async with self._window:
                if self._pacing.schedule != schedule:
                    continue
                link = await self._ready()
                return await link.request(command, body, self._config.response_timeout_seconds), epoch

    async def _ready(self) -> Link:
        """The bound connection, waiting up to connect_timeout for one."""
        if (link := self._link) is not None and link.lost is None and not self._closing:
            return link  # bound: no timer to set up (this runs before every request)
        self.start()
        try:
            async with asyncio.timeout(self._config.connect_timeout_seconds):
                while True:
                    if self._closing:
                        raise SmppNotSent("the SMPP session is closed")
                    if self._link is not None and self._link.lost is None:
                        return self._link
                    if self._bind_refused is not None:
                        raise SmppBindFailed(self._bind_refused)
                    await self._changed.wait()
        except TimeoutError:
            waited = self._config.connect_timeout_seconds
            raise SmppNotSent(f"no SMPP session within {waited:g} s: {self._problem}") from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _keep(self) -> None:
        delay = self._config.reconnect_min_seconds
        while not self._closing:
            link = await self._open()
            if link is not None:
                delay = self._config.reconnect_min_seconds
                await self._serve(link)
            if self._closing:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._config.reconnect_max_seconds)

    async def _open(self) -> Link | None:
        c = self._config
        try:
            async with asyncio.timeout(c.connect_timeout_seconds):
                reader, writer = await asyncio.open_connection(c.host, c.port)
        except (OSError, TimeoutError) as exc:
            self._failed(f"cannot connect to {c.host}:{c.port} ({exc!r})")
            return None
        link = Link(reader, writer)
        sequence = link.next_sequence()
        try:
            link.send(Pdu(Command.bind_transceiver, 0, sequence, Bind(c.system_id, c.password, c.system_type).encode()))
            async with asyncio.timeout(c.response_timeout_seconds):
                pdu = await read_pdu(reader)  # the SMSC sends nothing else before it answers the bind
            if pdu.sequence != sequence or pdu.command not in (Command.bind_transceiver_resp, Command.generic_nack):
                raise InvalidPdu(f"{pdu.command:#x} where the bind_transceiver_resp was expected")
            if pdu.status != Status.ESME_ROK:
                self._bind_refused = pdu.status
                await link.close("bind refused")
                self._failed(f"the SMSC refuses the bind: {status_name(pdu.status)}")
                return None
            resp = BindResp.decode(pdu.body)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, InvalidPdu) as exc:
            await link.close("bind failed")
            self._failed(f"bind to {c.host}:{c.port} failed ({exc!r})")
            return None
        self._bind_refused = None
        self.supports_tlvs = (resp.sc_interface_version or 0) >= INTERFACE_VERSION
        self.stats.binds += 1
        log.info("smpp: bound to %s at %s:%d as %s", resp.system_id or "the SMSC", c.host, c.port, c.system_id)
        return link

    def _failed(self, problem: str) -> None:
        self._problem = problem
        log.warning("smpp: %s", problem)
        self._notify()

    async def _serve(self, link: Link) -> None:
        self._link = link
        self._notify()
        tasks = [asyncio.create_task(self._read(link)), asyncio.create_task(self._keep_alive(link))]
        reason = "the session was closed"
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            ended = next(iter(done))
            if (error := ended.exception()) is not None:
                log.error("smpp: the session failed", exc_info=error)
                reason = f"internal error ({error!r})"
            else:
                reason = ended.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._link = None
            await link.close(reason)
            if not self._closing:
                self.stats.connections_lost += 1
                self._failed(f"connection lost: {reason}")

    async def _read(self, link: Link) -> str:
        """Reads until the connection ends; returns why it ended."""
        while True:
            try:
                pdu = await read_pdu(link.reader)
            except asyncio.IncompleteReadError:
                return "the SMSC closed the connection"
            except OSError as exc:
                return f"connection error ({exc!r})"
            except InvalidPdu as exc:
                return f"unreadable PDU ({exc})"
            if pdu.is_response:
                if not link.answer(pdu):
                    log.info("smpp: %#x for sequence %d, which nobody waits for", pdu.command, pdu.sequence)
            elif pdu.command == Command.deliver_sm:
                self._spawn(self._deliver(link, pdu))
            elif pdu.command == Command.enquire_link:
                _reply(link, Pdu(Command.enquire_link_resp, 0, pdu.sequence))
            elif pdu.command == Command.unbind:
                _reply(link, Pdu(Command.unbind_resp, 0, pdu.sequence))
                self.stats.unbinds_received += 1
                return "the SMSC unbound the session"
            else:
                _reply(link, Pdu(Command.generic_nack, Status.ESME_RINVCMDID, pdu.sequence))

    async def _keep_alive(self, link: Link) -> str:
        while True:
            await asyncio.sleep(self._config.enquire_link_seconds)
            try:
                await link.request(Command.enquire_link, b"", self._config.response_timeout_seconds)
            except SmppNotSent as exc:
                return str(exc)
            except SmppInDoubt as exc:
                return f"enquire_link unanswered: {exc}"
            self.stats.enquire_links += 1

    async def _deliver(self, link: Link, pdu: Pdu) -> None:
        try:
            message = ShortMessage.decode(pdu.body)
        except InvalidPdu as exc:
            log.warning("smpp: unreadable deliver_sm: %s", exc)
            _reply(link, Pdu(Command.generic_nack, Status.ESME_RINVMSGLEN, pdu.sequence))
            return
        status = Status.ESME_ROK
        try:
            await self._on_deliver(message)
        except (TimeoutError, ConnectionError) as exc:  # the service busy or stopping: a line, not a traceback
            log.warning("smpp: a deliver_sm was not handled (%s); the SMSC is asked to send it again", exc)
            status = Status.ESME_RX_T_APPN
        except Exception:  # the SMSC delivers it again later
            log.exception("smpp: handling a deliver_sm failed")
            status = Status.ESME_RX_T_APPN
        _reply(link, Pdu(Command.deliver_sm_resp, status, pdu.sequence, MessageIdResp().encode()))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        # Handled beside the reader, not in it: a handler that sends (an automatic
        # answer to a reply) waits for a submit_sm_resp only the reader can read.
        task = asyncio.create_task(work)
        self._delivering.add(task)
        task.add_done_callback(self._delivering.discard)


def _reply(link: Link, pdu: Pdu) -> None:
    with contextlib.suppress(ConnectionError):
        link.send(pdu)


def _message_id(body: bytes) -> str:
    try:
        return MessageIdResp.decode(body).message_id
    except InvalidPdu:  # accepted all the same; keep what can be read of the id
        return body.split(b"\0", 1)[0].decode("latin-1")[:64]
