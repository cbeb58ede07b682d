"""A stand-in SMSC on loopback for the SMPP channel's tests, drills and the demo: it
binds ESMEs that give the right system_id and password, takes submit_sm, answers
query_sm, sends delivery receipts after a delay and replies (MO) on request, and does
what a struggling SMSC does when a test asks (throttle, drop the connection with a
submit_sm unanswered, generic_nack, unbind).

It speaks through the channel's own PDU code (coordinator/channels/smpp); that both
agree with the rest of the world is checked against an SMSC and an ESME we did not
write (tests/test_smpp_independent.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from coordinator.channels.smpp.bodies import (
    ESM_RECEIPT,
    ESM_UDHI,
    Bind,
    BindResp,
    MessageIdResp,
    QueryResp,
    QuerySm,
    ShortMessage,
)
from coordinator.channels.smpp.inbound import Concat, Reassembly, user_data
from coordinator.channels.smpp.pdu import RESPONSE_BIT, Command, Pdu, Status, Tag, read_pdu
from coordinator.channels.smpp.receipts import STAT_MESSAGE_STATE
from coordinator.channels.smpp.text import DC_UCS2, concat_header, decode_text, encode_units
from coordinator.clock import Clock
from coordinator.errors import InvalidPdu

BINDS = (Command.bind_transmitter, Command.bind_receiver, Command.bind_transceiver)
ReceiptForm = Literal["text", "tlv", "both"]


@dataclass(frozen=True)
class SubmittedPart:
    message_id: str
    message: ShortMessage
    concat: Concat | None
    taken_at: datetime | None = None
    """When it was taken, by the SMSC's clock."""


@dataclass(frozen=True)
class SandboxMessage:
    """A message as the phone would show it: its parts joined and decoded."""

    source: str
    destination: str
    text: str
    data_coding: int
    message_ids: list[str]
    """The parts' ids, in part order."""
    taken_at: datetime | None = None
    """When its last part was taken."""


@dataclass
class _State:
    destination: str
    stat: str | None = None  # None: en route


@dataclass(eq=False)  # one per connection, kept in a set by identity
class _Esme:
    writer: asyncio.StreamWriter
    command: int = 0  # the bind, 0 while unbound
    sequence: int = 0
    waiting: dict[int, asyncio.Future[Pdu]] = field(default_factory=dict)

    def send(self, pdu: Pdu) -> None:
        if not self.writer.is_closing():
            self.writer.write(pdu.encode())

    async def request(self, command: int, body: bytes) -> Pdu:
        self.sequence += 1
        answer: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self.waiting[self.sequence] = answer
        self.send(Pdu(command, 0, self.sequence, body))
        async with asyncio.timeout(5):
            return await answer


class SandboxSmsc:
    """`outcomes`: the receipt stat per destination number ("+8613800000002":
    "UNDELIV"); DELIVRD for the rest. `receipt_form`: receipts in the de-facto text,
    in TLVs, or both. `announce_tlvs`: the bind_resp carries sc_interface_version.
    `answer_delay`: seconds before a submit_sm is answered (`max_unanswered` then shows
    the ESME's window). `throttle_rate`: at most that many submit_sm taken in any one
    second by the clock (a sliding second, over all binds), the rest answered
    ESME_RTHROTTLED, as an SMSC holding an ESME to its contract's rate; 0: no limit."""

    def __init__(self, *, clock: Clock, system_id: str = "sandbox", password: str = "secret",
                 receipt_delay: float = 0.05, outcomes: dict[str, str] | None = None,
                 receipt_form: ReceiptForm = "both", supports_query: bool = True, announce_tlvs: bool = True,
                 answer_delay: float = 0.0, throttle_rate: float = 0.0) -> None:
        self._clock = clock
        self.system_id, self._password = system_id, password
        self._receipt_delay = receipt_delay
        self._outcomes = {number.lstrip("+"): stat for number, stat in (outcomes or {}).items()}
        self._receipt_form = receipt_form
        self._supports_query = supports_query
        self._announce_tlvs = announce_tlvs
        self._answer_delay = answer_delay
        self._throttle_rate = throttle_rate
        self._taken_lately: deque[datetime] = deque()  # for throttle_rate: takes in the last second
        self._unanswered = 0
        self.max_unanswered = 0
        self._server: asyncio.Server | None = None
        self._esmes: set[_Esme] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._states: dict[str, _State] = {}
        self._reassembly = Reassembly(keep_for=timedelta(hours=1))
        self._changed = asyncio.Event()
        self._faults: deque[tuple[str, int]] = deque()  # (what, status) for the next submits, in order
        self._part_ids: dict[tuple[str, str, int], dict[int, str]] = {}
        self._mo_reference = 0
        self.port = 0
        self.parts: list[SubmittedPart] = []
        self.messages: list[SandboxMessage] = []
        self.binds = self.enquire_links = self.dropped = 0
        self.throttled = 0
        """submit_sm answered ESME_RTHROTTLED for `throttle_rate`."""
        self.receipts = 0
        """Receipts an ESME answered ESME_ROK."""

    async def start(self) -> SandboxSmsc:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for esme in list(self._esmes):
            esme.writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> SandboxSmsc:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # Faults, each for the next submit_sm(s) in the order asked.
    def pass_next(self, count: int) -> None:
        """Take the next `count` submit_sm as usual (before the faults asked after this)."""
        self._faults += [("take", 0)] * count

    def throttle_next(self, count: int, status: int = Status.ESME_RTHROTTLED) -> None:
        self._faults += [("refuse", status)] * count

    def refuse_next(self, status: int) -> None:
        self._faults.append(("refuse", status))

    def nack_next(self, status: int = Status.ESME_RSYSERR) -> None:
        self._faults.append(("nack", status))

    def drop_next(self, *, taken: bool = True) -> None:
        """Read the next submit_sm, keep it (`taken`: it goes out and gets a receipt)
        or not, and close the connection without answering."""
        self._faults.append(("drop-taken" if taken else "drop", 0))

    async def unbind_all(self) -> None:
        """Unbind every bound ESME (as an SMSC going down for maintenance does)."""
        for esme in [e for e in self._esmes if e.command]:
            with contextlib.suppress(TimeoutError, ConnectionError):
                await esme.request(Command.unbind, b"")
            esme.writer.close()

    async def inject_mo(self, sender: str, recipient: str, text: str, *, parts: int = 0,
                        ucs2: bool = False) -> list[int]:
        """Send a reply from `sender` to a bound ESME: in `parts` concatenated parts, or
        (0) in as many as it needs; GSM-7 when it can be, or UCS-2 if `ucs2`. Returns
        the ESME's command_status for each part."""
        esme = self._receiver()
        if esme is None:
            raise RuntimeError("no ESME is bound to receive")
        data_coding, units = encode_units(text)
        if ucs2:
            data_coding, units = DC_UCS2, [ch.encode("utf-16-be") for ch in text]
        limits = (140, 134) if data_coding == DC_UCS2 else (160, 153)  # octets: alone, beside a header
        chunks = _even(units, parts) if parts else _packed(units, *limits)
        self._mo_reference = (self._mo_reference + 1) % 256
        statuses = []
        for number, chunk in enumerate(chunks, 1):
            header = concat_header(self._mo_reference, len(chunks), number) if len(chunks) > 1 else b""
            message = ShortMessage(sender.lstrip("+"), recipient, header + chunk,
                                   source_addr_ton=1 if sender.startswith("+") else 0, source_addr_npi=1,
                                   esm_class=ESM_UDHI if header else 0, data_coding=data_coding)
            statuses.append((await esme.request(Command.deliver_sm, message.encode())).status)
        return statuses

    def stat(self, message_id: str) -> str | None:
        """The receipt stat sent for a part ("DELIVRD", "UNDELIV"...), None while en route."""
        state = self._states.get(message_id)
        return None if state is None else state.stat

    async def settled(self, timeout: float = 60.0) -> None:
        """Returns once every receipt due was answered by an ESME (and every delayed
        answer sent)."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Returns once `condition()` holds (checked whenever something happened here)."""
        async with asyncio.timeout(timeout):
            while not condition():
                changed = self._changed
                await changed.wait()

    def _receiver(self) -> _Esme | None:
        return next((e for e in self._esmes if e.command in (Command.bind_transceiver, Command.bind_receiver)), None)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        esme = _Esme(writer)
        self._esmes.add(esme)
        try:
            while not writer.is_closing():
                pdu = await read_pdu(reader)
                if pdu.is_response:
                    if (waiting := esme.waiting.pop(pdu.sequence, None)) is not None and not waiting.done():
                        waiting.set_result(pdu)
                elif pdu.command in BINDS:
                    self._bind(esme, pdu)
                elif pdu.command == Command.enquire_link:
                    self.enquire_links += 1
                    esme.send(Pdu(Command.enquire_link_resp, 0, pdu.sequence))
                elif pdu.command == Command.unbind:
                    esme.send(Pdu(Command.unbind_resp, 0, pdu.sequence))
                    writer.close()
                elif not esme.command:
                    esme.send(Pdu(Command.generic_nack, Status.ESME_RINVBNDSTS, pdu.sequence))
                elif pdu.command == Command.submit_sm:
                    self._submit(esme, pdu)
                elif pdu.command == Command.query_sm and self._supports_query:
                    esme.send(self._query(pdu))
                else:
                    esme.send(Pdu(Command.generic_nack, Status.ESME_RINVCMDID, pdu.sequence))
                self._notify()
        except (asyncio.IncompleteReadError, ConnectionError, InvalidPdu):
            pass
        finally:
            self._esmes.discard(esme)
            for waiting in esme.waiting.values():
                if not waiting.done():
                    waiting.set_exception(ConnectionError("the ESME went away"))
            writer.close()
            self._notify()

    def _bind(self, esme: _Esme, pdu: Pdu) -> None:
        bind = Bind.decode(pdu.body)
        status = (Status.ESME_RINVSYSID if bind.system_id != self.system_id
                  else Status.ESME_RINVPASWD if bind.password != self._password
                  else Status.ESME_RALYBND if esme.command else Status.ESME_ROK)
        resp = BindResp(self.system_id, 0x34 if self._announce_tlvs else None)
        esme.send(Pdu(pdu.command | RESPONSE_BIT, status, pdu.sequence, resp.encode() if status == 0 else b""))
        if status == Status.ESME_ROK:
            esme.command = pdu.command
            self.binds += 1
        elif not esme.command:
            esme.writer.close()

    def _submit(self, esme: _Esme, pdu: Pdu) -> None:
        what, status = self._faults.popleft() if self._faults else ("take", 0)
        if what == "take" and self._over_rate():
            self.throttled += 1
            esme.send(Pdu(Command.submit_sm_resp, Status.ESME_RTHROTTLED, pdu.sequence))
            return
        if what == "refuse":
            esme.send(Pdu(Command.submit_sm_resp, status, pdu.sequence))
            return
        if what == "nack":
            esme.send(Pdu(Command.generic_nack, status, pdu.sequence))
            return
        message = ShortMessage.decode(pdu.body)
        message_id = f"{len(self.parts) + 1:08X}"
        if what != "drop":
            self._take(message_id, message)
        if what.startswith("drop"):
            self.dropped += 1
            esme.writer.close()
            return
        answer = Pdu(Command.submit_sm_resp, 0, pdu.sequence, MessageIdResp(message_id).encode())
        if self._answer_delay > 0:
            self._spawn(self._answer_later(esme, answer))
        else:
            esme.send(answer)

    def _over_rate(self) -> bool:
        """Whether one more take would pass `throttle_rate`; if not, it is counted."""
        if not self._throttle_rate:
            return False
        now = self._clock.now()
        recent = self._taken_lately
        while recent and recent[0] <= now - timedelta(seconds=1):
            recent.popleft()
        if len(recent) + 1 > self._throttle_rate:
            return True
        recent.append(now)
        return False

    async def _answer_later(self, esme: _Esme, answer: Pdu) -> None:
        self._unanswered += 1
        self.max_unanswered = max(self.max_unanswered, self._unanswered)
        try:
            await asyncio.sleep(self._answer_delay)
            esme.send(answer)
        finally:
            self._unanswered -= 1

    def _take(self, message_id: str, message: ShortMessage) -> None:
        concat, _ = user_data(message)
        self.parts.append(SubmittedPart(message_id, message, concat, self._clock.now()))
        self._states[message_id] = _State(message.destination_addr)
        key = (message.source_addr, message.destination_addr, concat.reference if concat else -1)
        ids = self._part_ids.setdefault(key, {})
        ids[concat.number if concat else 1] = message_id
        if (whole := self._reassembly.add(message, self._clock.now())) is not None:
            del self._part_ids[key]
            self.messages.append(SandboxMessage(message.source_addr, message.destination_addr,
                                                decode_text(whole.data, whole.first.data_coding),
                                                whole.first.data_coding, [ids[n] for n in sorted(ids)],
                                                self._clock.now()))
        if message.registered_delivery & 0x03:
            self._spawn(self._receipt(message_id, message))

    async def _receipt(self, message_id: str, message: ShortMessage) -> None:
        await asyncio.sleep(self._receipt_delay)
        stat = self._outcomes.get(message.destination_addr, "DELIVRD")
        self._states[message_id].stat = stat
        when = self._clock.now().strftime("%y%m%d%H%M")
        tlvs: dict[int, bytes] = {Tag.receipted_message_id: message_id.encode() + b"\0",
                                  Tag.message_state: bytes([STAT_MESSAGE_STATE[stat]])}
        text = (f"id:{message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} submit date:{when} "
                f"done date:{when} stat:{stat} err:{'000' if stat == 'DELIVRD' else '001'} text:")
        receipt = ShortMessage(
            message.destination_addr, message.source_addr, text.encode() if self._receipt_form != "tlv" else b"",
            source_addr_ton=message.dest_addr_ton, source_addr_npi=message.dest_addr_npi, esm_class=ESM_RECEIPT,
            tlvs=tlvs if self._receipt_form != "text" else {},
        )
        while True:  # to whoever is bound to receive, as soon as someone is; refused, again a while later
            if (esme := self._receiver()) is not None:
                with contextlib.suppress(TimeoutError, ConnectionError):
                    if (await esme.request(Command.deliver_sm, receipt.encode())).status == 0:
                        self.receipts += 1
                        return
                await asyncio.sleep(max(self._receipt_delay, 0.01))
                continue
            changed = self._changed
            await changed.wait()

    def _query(self, pdu: Pdu) -> Pdu:
        query = QuerySm.decode(pdu.body)
        state = self._states.get(query.message_id)
        if state is None:
            return Pdu(Command.query_sm_resp, Status.ESME_RQUERYFAIL, pdu.sequence)
        message_state = STAT_MESSAGE_STATE[state.stat] if state.stat else 1  # ENROUTE
        final = self._clock.now().strftime("%y%m%d%H%M%S000+") if state.stat else ""
        resp = QueryResp(query.message_id, message_state, 0, final)
        return Pdu(Command.query_sm_resp, 0, pdu.sequence, resp.encode())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _even(units: list[bytes], count: int) -> list[bytes]:
    """`units` in `count` parts of about the same number of characters."""
    return [b"".join(units[i * len(units) // count:(i + 1) * len(units) // count]) for i in range(count)]


def _packed(units: list[bytes], single: int, per_part: int) -> list[bytes]:
    """`units` in one part of at most `single` octets, or in parts of at most `per_part`."""
    if sum(map(len, units)) <= single:
        return [b"".join(units)]
    chunks, current = [], b""
    for unit in units:
        if len(current) + len(unit) > per_part:
            chunks.append(current)
            current = b""
        current += unit
    return chunks + [current]
