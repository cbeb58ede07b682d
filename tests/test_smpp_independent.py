"""The SMPP channel against an SMSC this project did not write, and the sandbox SMSC
against an ESME this project did not write: both from smpp34 (PyPI, MIT; a Rust SMPP
3.4 implementation with an asyncio binding), so our codec and session are not only
checked against themselves.

smpp34's SMSC accepts any credentials and answers query_sm with ESME_RQUERYFAIL, so
bind checks and query_sm are covered by test_smpp_session.py; the lost connection is
a held submit_sm that it never answers (its Python binding cannot drop one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from coordinator.channels.smpp import DeliveryReport, SmppConfig, SmppSms
from coordinator.channels.smpp.bodies import ShortMessage
from coordinator.channels.smpp.pdu import Command, Pdu, Tag, decode
from coordinator.clock import ManualClock
from coordinator.commands.sandboxed import free_port
from coordinator.errors import SendError
from coordinator.models import DeliveryStatus
from coordinator.sandbox.smsc import SandboxSmsc

from .test_smpp_session import FAST, SCRIPT, Heard, eventually, no_leftover_tasks  # noqa: F401

try:
    import smpp34
    from smpp34._smpp34 import (  # typed in its stub
        ESME_RSYSERR,
        ESME_RTHROTTLED,
        TLV_MESSAGE_STATE,
        TLV_RECEIPTED_MESSAGE_ID,
    )
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("smpp34 is required in CI (pip install 'smpp34>=1.5,<2')", pytrace=False)
    pytest.skip("smpp34 is not installed", allow_module_level=True)


class RttSmsc:
    """smpp34's SMSC, scripted by the test: takes submit_sm (after `throttle` refusals),
    holds them unanswered while `hold`, and sends a receipt for each in `receipts` form."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server = smpp34.Server(host="127.0.0.1", port=self.port, system_id="RTT")
        self.sessions: dict[str, Any] = {}
        self.taken: list[Any] = []
        self.seen = 0
        self.throttle = 0
        self.hold = False
        self.held: list[Any] = []
        self.receipts: dict[str, tuple[str, int]] = {}  # destination -> (stat, message_state)
        self.receipt_form = "text"
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.server.start()
        self._pump_task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        self._pump_task.cancel()
        for task in [self._pump_task, *self._tasks]:
            task.cancel()
        await asyncio.gather(self._pump_task, *self._tasks, return_exceptions=True)
        for event in self.held:
            event.reject(ESME_RSYSERR)
        await self.server.stop()

    def esme(self) -> Any:
        return next(iter(self.sessions.values()))

    async def _pump(self) -> None:
        while True:
            event = await self.server.next()
            if isinstance(event, smpp34.Esme):
                self.sessions[event.session_id] = event
            elif isinstance(event, smpp34.Unbound):
                self.sessions.pop(event.session_id, None)
            elif isinstance(event, smpp34.SubmitSmEvent):
                self.seen += 1
                if self.throttle:
                    self.throttle -= 1
                    event.reject(ESME_RTHROTTLED)
                elif self.hold:
                    self.held.append(event)
                else:
                    message_id = f"rtt{len(self.taken):04d}"
                    self.taken.append(event)
                    event.accept(message_id=message_id)
                    task = asyncio.create_task(self._receipt(event, message_id))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _receipt(self, event: Any, message_id: str) -> None:
        stat, state = self.receipts.get(event.destination_addr, ("DELIVRD", 2))
        text = (f"id:{message_id} sub:001 dlvrd:001 submit date:2611241000 done date:2611241001 "
                f"stat:{stat} err:{'000' if stat == 'DELIVRD' else '004'} text:").encode()
        tlvs = [smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),
                smpp34.Tlv(TLV_MESSAGE_STATE, bytes([state]))]
        esme = self.sessions.get(event.session_id)
        with contextlib.suppress(smpp34.SmppError):  # the ESME went away meanwhile (the test is over)
            if esme is not None:
                await esme.deliver_sm(
                    event.source_addr, text if self.receipt_form == "text" else b"", source_addr=event.destination_addr,
                    esm_class=0x04, tlvs=tlvs if self.receipt_form == "tlv" else [])


def joined(events: list[Any]) -> str:
    """The text of submitted parts, read here without our code: the header by hand,
    the text with Python's codecs."""
    parts: dict[int, bytes] = {}
    for event in events:
        data = event.short_message
        if event.esm_class & 0x40:
            header = data[1:1 + data[0]]
            assert header[:2] == b"\x00\x03"  # 8-bit reference concatenation
            parts[header[4]] = data[1 + data[0]:]
            assert header[3] == len(events)
        else:
            parts[1] = data
    data = b"".join(parts[n] for n in sorted(parts))
    return data.decode("utf-16-be") if events[0].data_coding == 8 else data.decode("ascii")


@pytest.fixture
async def rtt() -> AsyncIterator[RttSmsc]:
    smsc = RttSmsc()
    await smsc.start()
    yield smsc
    await smsc.stop()


@pytest.fixture
async def channel(rtt: RttSmsc, clock: ManualClock, heard: Heard) -> AsyncIterator[SmppSms]:
    opened = SmppSms(SmppConfig(**{**FAST, "port": rtt.port, "response_timeout_seconds": 0.3}),
                     on_receipt=heard.receipt, on_reply=heard.reply, clock=clock)
    yield opened
    await opened.close()


@pytest.fixture
def heard() -> Heard:
    return Heard()


async def test_a_script_in_parts_reaches_it_whole_after_a_throttle(rtt: RttSmsc, channel: SmppSms,
                                                                   heard: Heard) -> None:
    rtt.throttle = 1
    accepted = await channel.send_sms("i1:1:p1:sms", "+8613800000001", SCRIPT)
    assert channel.stats.throttled == 1 and rtt.seen == len(rtt.taken) + 1
    assert joined(rtt.taken) == SCRIPT
    assert {(e.destination_addr, e.registered_delivery, e.data_coding) for e in rtt.taken} == {("8613800000001", 1, 8)}
    assert accepted.provider_id == ",".join(f"rtt{n:04d}" for n in range(len(rtt.taken)))
    await eventually(lambda: bool(heard.reports))
    assert heard.reports == [DeliveryReport(accepted.provider_id, DeliveryStatus.delivered, None, "i1:1:p1:sms")]


@pytest.mark.parametrize("form", ["text", "tlv"])
async def test_its_receipts_update_the_status(rtt: RttSmsc, channel: SmppSms, heard: Heard, form: str) -> None:
    rtt.receipt_form = form
    rtt.receipts["8613800000002"] = ("UNDELIV", 5)
    ok = await channel.send_sms("a", "+8613800000001", "1 ABC")
    lost = await channel.send_sms("b", "+8613800000002", "确认")
    await eventually(lambda: len(heard.reports) == 2)
    assert sorted((r.delivery_id, r.provider_id, r.status) for r in heard.reports) == [
        ("a", ok.provider_id, DeliveryStatus.delivered), ("b", lost.provider_id, DeliveryStatus.undelivered)]
    # Its SMSC has no query_sm: the status is what the receipts said.
    assert await channel.status_of("b", lost.provider_id) == DeliveryStatus.undelivered


async def test_without_receipts_or_query_sm_the_status_is_unknown(rtt: RttSmsc, channel: SmppSms) -> None:
    with pytest.raises(SendError) as caught:
        await channel.status_of("x", "never-sent")
    assert (caught.value.code, caught.value.retryable) == ("ESME_RQUERYFAIL", False)


async def test_its_replies_reach_the_callback(rtt: RttSmsc, channel: SmppSms, heard: Heard) -> None:
    await channel.start()
    await eventually(lambda: bool(rtt.sessions))
    esme = rtt.esme()
    mo: dict[str, Any] = dict(source_addr="8613800000001", source_addr_ton=1, source_addr_npi=1, dest_addr_ton=0)
    await esme.deliver_sm("1065712345", "确认".encode("utf-16-be"), data_coding=8, **mo)
    await esme.deliver_sm("1065712345", b"1 ABC", data_coding=0, **mo)
    long_reply = "确认收到，已通知班组长，马上到场😀"
    raw = long_reply.encode("utf-16-be")
    for number, chunk in ((2, raw[20:]), (1, raw[:20])):  # out of order, a surrogate pair split across
        await esme.deliver_sm("1065712345", bytes([5, 0, 3, 77, 2, number]) + chunk, data_coding=8, esm_class=0x40,
                              **mo)
    await eventually(lambda: len(heard.replies) == 3)
    assert [(r.from_number, r.to_number, r.text) for r in heard.replies] == [
        ("+8613800000001", "1065712345", "确认"), ("+8613800000001", "1065712345", "1 ABC"),
        ("+8613800000001", "1065712345", long_reply)]


async def test_after_it_unbinds_the_channel_binds_again(rtt: RttSmsc, channel: SmppSms) -> None:
    await channel.send_sms("a", "+8613800000001", "1 ABC")
    await rtt.esme().unbind()
    await eventually(lambda: channel.stats.binds == 2 and channel.stats.unbinds_received == 1)
    await channel.send_sms("b", "+8613800000001", "2 ABC")
    assert [joined([e]) for e in rtt.taken] == ["1 ABC", "2 ABC"]


async def test_a_submit_it_never_answers_is_in_doubt_and_not_sent_again(rtt: RttSmsc, channel: SmppSms) -> None:
    rtt.hold = True
    with pytest.raises(SendError) as caught:
        await channel.send_sms("d", "+8613800000001", "1 ABC")
    assert (caught.value.code, caught.value.retryable, caught.value.permanent) == ("in-doubt", False, False)
    rtt.hold = False
    with pytest.raises(SendError, match="in doubt"):
        await channel.send_sms("d", "+8613800000001", "1 ABC")
    assert rtt.seen == 1


async def test_it_answers_our_enquire_link(rtt: RttSmsc, channel: SmppSms) -> None:
    await channel.start()
    await eventually(lambda: channel.stats.enquire_links >= 2)
    assert channel.stats.connections_lost == 0


def test_our_submit_sm_as_it_reads_it() -> None:
    ours = ShortMessage("1065712345", "8613800000001", bytes([5, 0, 3, 9, 2, 1]) + "确认".encode("utf-16-be"),
                        source_addr_ton=0, source_addr_npi=1, dest_addr_ton=1, dest_addr_npi=1, esm_class=0x40,
                        registered_delivery=1, data_coding=8, validity_period="000000010000000R",
                        tlvs={Tag.message_payload: b"abc"})
    theirs = smpp34.decode(Pdu(Command.submit_sm, 0, 42, ours.encode()).encode())
    assert isinstance(theirs, smpp34.SubmitSm)
    assert (theirs.sequence_number, theirs.source_addr, theirs.destination_addr, theirs.dest_addr_ton,
            theirs.esm_class, theirs.registered_delivery, theirs.data_coding, theirs.validity_period,
            theirs.short_message) == (42, "1065712345", "8613800000001", 1, 0x40, 1, 8, "000000010000000R",
                                      ours.short_message)
    assert [(t.tag, t.value) for t in theirs.tlvs] == [(Tag.message_payload, b"abc")]


def test_its_deliver_sm_as_we_read_it() -> None:
    theirs = smpp34.DeliverSm("8613800000001", "1065712345", b"id:7 stat:DELIVRD", esm_class=0x04, data_coding=0,
                              tlvs=[smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, b"7\0"),
                                    smpp34.Tlv(TLV_MESSAGE_STATE, b"\x02")], sequence_number=5)
    pdu = decode(theirs.encode())
    ours = ShortMessage.decode(pdu.body)
    assert (pdu.command, pdu.sequence) == (Command.deliver_sm, 5)
    assert (ours.source_addr, ours.destination_addr, ours.is_receipt, ours.short_message) == (
        "8613800000001", "1065712345", True, b"id:7 stat:DELIVRD")
    assert ours.tlvs == {Tag.receipted_message_id: b"7\0", Tag.message_state: b"\x02"}


async def test_its_esme_against_our_sandbox(clock: ManualClock) -> None:
    async with SandboxSmsc(clock=clock, receipt_delay=0.01) as sandbox:
        client = smpp34.Client(host="127.0.0.1", port=sandbox.port, system_id="sandbox", password="secret",
                               bind_type="TRX")
        session = await client.connect()
        try:
            resp = await session.submit_sm("8613800000001", "确认收到".encode("utf-16-be"), source_addr="1065712345",
                                           data_coding=8, registered_delivery=1)
            assert resp.is_success and [m.text for m in sandbox.messages] == ["确认收到"]
            receipt = await asyncio.wait_for(session.next(), 2)
            assert isinstance(receipt, smpp34.DeliverSmEvent) and resp.message_id is not None
            assert receipt.esm_class == 0x04 and b"stat:DELIVRD" in receipt.short_message
            assert {(t.tag, t.value) for t in receipt.tlvs} == {
                (Tag.receipted_message_id, resp.message_id.encode() + b"\0"), (Tag.message_state, b"\x02")}
            sandbox.throttle_next(1)
            throttled = await session.submit_sm("8613800000001", b"hi", source_addr="1065712345")
            assert throttled.command_status == ESME_RTHROTTLED
            await sandbox.inject_mo("+8613800000001", "1065712345", "1 ABC")
            reply = await asyncio.wait_for(session.next(), 2)
            assert isinstance(reply, smpp34.DeliverSmEvent)
            assert (reply.source_addr, reply.short_message, reply.data_coding) == ("8613800000001", b"1 ABC", 0)
        finally:
            await session.unbind()
            # Drained to the end before the loop closes: smpp34 1.5.0 can abort the
            # interpreter at exit if its session still has an event for Python.
            with contextlib.suppress(TimeoutError):
                while not isinstance(await asyncio.wait_for(session.next(), 2), smpp34.Disconnected):
                    pass
            await client.stop()
