"""The SMPP channel against the sandbox SMSC on loopback: bind, keep-alive, a Chinese
script in parts, receipts, replies, throttling, the window, a lost connection, a lost
submit_sm_resp, and the PDU codec underneath. Intervals are cut to tens of
milliseconds; nothing sleeps longer than it must."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from coordinator.channels.smpp import (
    DeliveryReport,
    InboundSms,
    SmppConfig,
    SmppSms,
    segment_count,
)
from coordinator.channels.smpp.bodies import (
    Bind,
    BindResp,
    MessageIdResp,
    QueryResp,
    QuerySm,
    ShortMessage,
)
from coordinator.channels.smpp.pdu import Command, Pdu, Status, Tag, decode, read_pdu
from coordinator.channels.smpp.text import DC_GSM7, DC_UCS2
from coordinator.clock import ManualClock
from coordinator.errors import InvalidPdu, SendError
from coordinator.models import DeliveryStatus
from coordinator.sandbox.smsc import SandboxSmsc
from coordinator.segments import sms_segments

from .smpp_channels import FAST, Channels, OpenChannel

SCRIPT = ("【演练】网络故障通报：华东区域部分用户4G业务受影响，预计2小时内恢复。请按预案统一口径答复客户，"
          "不得自行承诺赔偿；如遇媒体询问请转宣传部。收到请回复1确认。😀") * 2
PARTS = 3  # of SCRIPT, in UCS-2


class Heard:
    def __init__(self) -> None:
        self.reports: list[DeliveryReport] = []
        self.replies: list[InboundSms] = []

    async def receipt(self, report: DeliveryReport) -> None:
        self.reports.append(report)

    async def reply(self, message: InboundSms) -> None:
        self.replies.append(message)



async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    """Set up first, torn down last: after the channel and the SMSC closed, nothing runs on."""
    yield
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert left == []


@pytest.fixture
async def smsc(clock: ManualClock) -> AsyncIterator[SandboxSmsc]:
    async with SandboxSmsc(clock=clock, receipt_delay=0.01) as sandbox:
        yield sandbox


@pytest.fixture
def heard() -> Heard:
    return Heard()


@pytest.fixture
async def open_channel(clock: ManualClock, heard: Heard) -> AsyncIterator[OpenChannel]:
    channels = Channels(clock)
    yield lambda smsc, **overrides: channels.open(smsc, heard, **overrides)
    await channels.close()


async def test_binds_and_exchanges_enquire_link(smsc: SandboxSmsc, open_channel: OpenChannel) -> None:
    channel = open_channel(smsc)
    await channel.start()
    await eventually(lambda: channel.stats.enquire_links >= 2 and smsc.enquire_links >= 2)
    assert (smsc.binds, channel.stats.binds, channel.stats.connections_lost) == (1, 1, 0)


async def test_a_wrong_password_is_a_configuration_error(smsc: SandboxSmsc, open_channel: OpenChannel) -> None:
    channel = open_channel(smsc, password="wrong")
    with pytest.raises(SendError) as caught:
        await channel.send_sms("i1:1:p1:sms", "+8613800000001", "1 ABC")
    assert (caught.value.code, caught.value.retryable, caught.value.permanent) == ("ESME_RINVPASWD", False, False)
    assert smsc.parts == []


async def test_a_chinese_script_in_parts_is_whole_at_the_smsc(smsc: SandboxSmsc, open_channel: OpenChannel,
                                                             heard: Heard) -> None:
    channel = open_channel(smsc)
    accepted = await channel.send_sms("i1:1:p1:sms", "+8613800000001", SCRIPT)
    assert segment_count(SCRIPT) == sms_segments(SCRIPT).segments == len(smsc.parts) == PARTS
    [message] = smsc.messages
    assert (message.text, message.destination, message.data_coding) == (SCRIPT, "8613800000001", DC_UCS2)
    assert accepted.provider_id == ",".join(message.message_ids) and accepted.status == "sent"
    headers = [part.message.short_message[:6] for part in smsc.parts]
    reference = headers[0][3]
    assert headers == [bytes([5, 0, 3, reference, PARTS, n]) for n in range(1, PARTS + 1)]
    assert all(p.message.registered_delivery == 1 and p.message.esm_class == 0x40 for p in smsc.parts)
    assert all(p.message.dest_addr_ton == 1 and p.message.validity_period == "000000010000000R" for p in smsc.parts)
    # Delivered once, when the last part is.
    await eventually(lambda: bool(heard.reports))
    await asyncio.sleep(0.03)
    assert heard.reports == [DeliveryReport(accepted.provider_id, DeliveryStatus.delivered, None, "i1:1:p1:sms")]
    # The same delivery again: no second message.
    assert await channel.send_sms("i1:1:p1:sms", "+8613800000001", SCRIPT) == accepted
    assert len(smsc.parts) == PARTS


async def test_a_gsm_text_goes_as_one_part(smsc: SandboxSmsc, open_channel: OpenChannel) -> None:
    await open_channel(smsc).send_sms("d", "+8613800000001", "Drill {A} at 10:00 €5")
    [part] = smsc.parts
    assert (part.message.data_coding, part.message.esm_class, part.concat) == (DC_GSM7, 0, None)
    assert smsc.messages[0].text == "Drill {A} at 10:00 €5"


@pytest.mark.parametrize("form", ["text", "tlv", "both"])
async def test_receipts_update_the_status(clock: ManualClock, open_channel: OpenChannel, heard: Heard,
                                          form: Any) -> None:
    async with SandboxSmsc(clock=clock, receipt_delay=0.01, receipt_form=form,
                           outcomes={"+8613800000002": "UNDELIV", "+8613800000003": "REJECTD"}) as smsc:
        channel = open_channel(smsc)
        ok = await channel.send_sms("a", "+8613800000001", "1 ABC")
        lost = await channel.send_sms("b", "+8613800000002", SCRIPT)
        refused = await channel.send_sms("c", "+8613800000003", "确认")
        await eventually(lambda: len(heard.reports) == 3)
        error = "UNDELIV:001" if form != "tlv" else "UNDELIV"  # err: is only in the text
        assert sorted(heard.reports, key=lambda r: r.delivery_id or "") == [
            DeliveryReport(ok.provider_id, DeliveryStatus.delivered, None, "a"),
            DeliveryReport(lost.provider_id, DeliveryStatus.undelivered, error, "b"),
            DeliveryReport(refused.provider_id, DeliveryStatus.failed, "REJECTD" + error[7:], "c"),
        ]
        assert await channel.status_of("b", lost.provider_id) == DeliveryStatus.undelivered


async def test_status_of_asks_the_smsc(clock: ManualClock, smsc: SandboxSmsc, open_channel: OpenChannel,
                                       heard: Heard) -> None:
    accepted = await open_channel(smsc).send_sms("d", "+8613800000001", SCRIPT)
    await eventually(lambda: bool(heard.reports))
    # Another process, which never saw the receipts, asks query_sm.
    assert await open_channel(smsc).status_of("d", accepted.provider_id) == DeliveryStatus.delivered
    async with SandboxSmsc(clock=clock, supports_query=False) as no_query:
        with pytest.raises(SendError) as caught:
            await open_channel(no_query).status_of("d", accepted.provider_id)
        assert (caught.value.code, caught.value.retryable) == ("ESME_RINVCMDID", False)


async def test_replies_reach_the_callback(smsc: SandboxSmsc, open_channel: OpenChannel, heard: Heard,
                                          clock: ManualClock) -> None:
    await open_channel(smsc).start()
    await smsc.wait_for(lambda: smsc.binds == 1)
    assert await smsc.inject_mo("+8613800000001", "1065712345", "确认") == [0]
    assert await smsc.inject_mo("+8613800000002", "1065712345", "1 ABC") == [0]
    assert await smsc.inject_mo("+8613800000003", "1065712345", "1 ABC", ucs2=True) == [0]
    long_reply = "确认收到，已通知班组长，预计十分钟内到达现场处置😀" * 4
    assert await smsc.inject_mo("+8613800000004", "1065712345", long_reply, parts=3) == [0, 0, 0]
    assert await smsc.inject_mo("+8613800000005", "1065712345", "1 K7Q confirmed", parts=2) == [0, 0]
    assert await smsc.inject_mo("+8613800000006", "1065712345", "收到" * 80) == [0, 0, 0]  # cut as it needs
    assert [(r.from_number, r.to_number, r.text, r.received_at) for r in heard.replies] == [
        ("+8613800000001", "1065712345", "确认", clock.now()),
        ("+8613800000002", "1065712345", "1 ABC", clock.now()),
        ("+8613800000003", "1065712345", "1 ABC", clock.now()),
        ("+8613800000004", "1065712345", long_reply, clock.now()),
        ("+8613800000005", "1065712345", "1 K7Q confirmed", clock.now()),
        ("+8613800000006", "1065712345", "收到" * 80, clock.now()),
    ]


async def test_a_reply_that_cannot_be_handled_is_asked_for_again(smsc: SandboxSmsc, clock: ManualClock) -> None:
    async def broken(_: InboundSms) -> None:
        raise RuntimeError("the store is down")

    async def ignore(_: DeliveryReport) -> None:
        pass

    channel = SmppSms(SmppConfig(**{**FAST, "port": smsc.port}), on_receipt=ignore, on_reply=broken, clock=clock)
    try:
        await channel.start()
        await smsc.wait_for(lambda: smsc.binds == 1)
        assert await smsc.inject_mo("+8613800000001", "1065712345", "1 ABC") == [Status.ESME_RX_T_APPN]
    finally:
        await channel.close()


async def test_throttled_submits_are_tried_again_after_a_pause(smsc: SandboxSmsc, open_channel: OpenChannel) -> None:
    channel = open_channel(smsc)
    await channel.start()
    smsc.throttle_next(1)
    smsc.throttle_next(1, status=Status.ESME_RMSGQFUL)
    started = time.monotonic()
    await channel.send_sms("d", "+8613800000001", "1 ABC")
    assert time.monotonic() - started >= 0.02 + 0.04  # two growing pauses
    assert channel.stats.throttled == 2
    assert [m.text for m in smsc.messages] == ["1 ABC"]


async def test_throttled_past_the_attempts_is_retryable(smsc: SandboxSmsc, open_channel: OpenChannel) -> None:
    channel = open_channel(smsc, throttle_attempts=3)
    smsc.throttle_next(3)
    with pytest.raises(SendError) as caught:
        await channel.send_sms("d", "+8613800000001", "1 ABC")
    assert (caught.value.code, caught.value.retryable) == ("ESME_RTHROTTLED", True)
    assert smsc.parts == []
    await channel.send_sms("d", "+8613800000001", "1 ABC")  # the outbox's retry later
    assert len(smsc.messages) == 1


async def test_the_window_bounds_what_is_outstanding(clock: ManualClock, open_channel: OpenChannel) -> None:
    async with SandboxSmsc(clock=clock, answer_delay=0.03) as smsc:
        channel = open_channel(smsc, window=2)
        sent = await asyncio.gather(*(channel.send_sms(f"d{i}", f"+86138000000{i:02d}", "1 ABC") for i in range(6)))
        assert len({a.provider_id for a in sent}) == 6
        assert smsc.max_unanswered == 2


@pytest.mark.parametrize(("fault", "code", "retryable", "permanent"), [
    ("refuse", Status.ESME_RINVDSTADR, False, True),
    ("refuse", Status.ESME_RINVSRCADR, False, False),
    ("nack", Status.ESME_RSYSERR, True, False),
    ("nack", Status.ESME_RINVCMDLEN, False, False),
])
async def test_refusals_say_what_to_do(smsc: SandboxSmsc, open_channel: OpenChannel, fault: str, code: int,
                                       retryable: bool, permanent: bool) -> None:
    (smsc.refuse_next if fault == "refuse" else smsc.nack_next)(code)
    with pytest.raises(SendError) as caught:
        await open_channel(smsc).send_sms("d", "+8613800000001", "1 ABC")
    assert (caught.value.code, caught.value.retryable, caught.value.permanent) == (
        Status(code).name, retryable, permanent)


async def test_a_bad_number_is_not_sent(smsc: SandboxSmsc, open_channel: OpenChannel) -> None:
    with pytest.raises(SendError) as caught:
        await open_channel(smsc).send_sms("d", "+86 138-0000", "1 ABC")
    assert (caught.value.code, caught.value.permanent) == ("invalid-number", True)


async def test_a_text_no_sms_can_carry_is_refused(smsc: SandboxSmsc, open_channel: OpenChannel) -> None:
    with pytest.raises(SendError) as caught:
        await open_channel(smsc).send_sms("d", "+8613800000001", "中" * (67 * 255 + 1))
    assert (caught.value.code, caught.value.retryable, caught.value.permanent) == ("too-long", False, False)
    assert smsc.parts == []


async def test_after_an_unbind_the_session_binds_again(smsc: SandboxSmsc, open_channel: OpenChannel) -> None:
    channel = open_channel(smsc)
    await channel.send_sms("d1", "+8613800000001", "1 ABC")
    await smsc.unbind_all()
    await eventually(lambda: smsc.binds == 2)
    await channel.send_sms("d2", "+8613800000001", "2 ABC")
    assert [m.text for m in smsc.messages] == ["1 ABC", "2 ABC"]
    assert (channel.stats.unbinds_received, channel.stats.connections_lost) == (1, 1)


async def test_a_lost_response_is_in_doubt_and_never_sent_again(smsc: SandboxSmsc, open_channel: OpenChannel,
                                                                heard: Heard) -> None:
    channel = open_channel(smsc)
    smsc.drop_next(taken=True)
    with pytest.raises(SendError) as caught:
        await channel.send_sms("d", "+8613800000001", "1 ABC")
    assert (caught.value.code, caught.value.retryable, caught.value.permanent) == ("in-doubt", False, False)
    assert len(smsc.parts) == 1 and smsc.dropped == 1
    await eventually(lambda: smsc.binds == 2)  # the connection comes back
    with pytest.raises(SendError, match="in doubt"):
        await channel.send_sms("d", "+8613800000001", "1 ABC")
    assert len(smsc.parts) == 1  # the SMSC still has it once
    await channel.send_sms("other", "+8613800000001", "2 ABC")
    assert [m.text for m in smsc.messages] == ["1 ABC", "2 ABC"]


async def test_a_failure_part_way_sends_only_the_rest_on_retry(smsc: SandboxSmsc, open_channel: OpenChannel) -> None:
    channel = open_channel(smsc)
    smsc.pass_next(2)
    smsc.refuse_next(Status.ESME_RSYSERR)
    with pytest.raises(SendError) as caught:
        await channel.send_sms("d", "+8613800000001", SCRIPT)
    assert caught.value.retryable and len(smsc.parts) == 2 and smsc.messages == []
    accepted = await channel.send_sms("d", "+8613800000001", SCRIPT)
    assert len(smsc.parts) == PARTS
    [message] = smsc.messages
    assert message.text == SCRIPT and accepted.provider_id == ",".join(message.message_ids)


@pytest.mark.parametrize(("announce", "submits"), [(True, 1), (False, PARTS)])
async def test_message_payload_when_the_smsc_announces_tlvs(clock: ManualClock, open_channel: OpenChannel,
                                                            announce: bool, submits: int) -> None:
    async with SandboxSmsc(clock=clock, announce_tlvs=announce) as smsc:
        accepted = await open_channel(smsc, long_text="payload").send_sms("d", "+8613800000001", SCRIPT)
        assert len(smsc.parts) == submits
        assert [m.text for m in smsc.messages] == [SCRIPT]
        assert accepted.provider_id.count(",") == submits - 1
        if announce:
            assert smsc.parts[0].message.short_message == b""
            assert Tag.message_payload in smsc.parts[0].message.tlvs


async def test_an_smsc_that_is_not_there_is_retryable(clock: ManualClock, open_channel: OpenChannel) -> None:
    smsc = await SandboxSmsc(clock=clock).start()
    await smsc.stop()  # its port is free now: nothing listens
    channel = open_channel(smsc, connect_timeout_seconds=0.1)
    with pytest.raises(SendError) as caught:
        await channel.send_sms("d", "+8613800000001", "1 ABC")
    assert (caught.value.code, caught.value.retryable) == ("connection", True)


# The codec underneath.

@pytest.mark.parametrize("body", [
    ShortMessage("1065712345", "8613800000001", "确认".encode("utf-16-be"), source_addr_ton=0, source_addr_npi=1,
                 dest_addr_ton=1, dest_addr_npi=1, esm_class=0x40, registered_delivery=1, data_coding=8,
                 validity_period="000000010000000R", tlvs={Tag.message_payload: b"x" * 300, 0x1403: b"\xaa"}),
    Bind("sandbox", "secret", "CPA", addr_ton=1),
    BindResp("SMSC", 0x34),
    BindResp("SMSC"),
    MessageIdResp("0A1B2C3D"),
    QuerySm("0A1B2C3D", "1065712345", 0, 1),
    QueryResp("0A1B2C3D", 2, 0, "261124100000000+"),
])
def test_bodies_round_trip(body: Any) -> None:
    assert type(body).decode(body.encode()) == body


def test_pdus_round_trip_and_bad_ones_are_refused() -> None:
    pdu = Pdu(Command.submit_sm_resp, Status.ESME_RTHROTTLED, 7, b"")
    assert decode(pdu.encode()) == pdu and pdu.is_response
    with pytest.raises(InvalidPdu):
        decode(pdu.encode() + b"\0")  # longer than its command_length
    with pytest.raises(InvalidPdu):
        ShortMessage.decode(b"no NUL anywhere in this body")
    with pytest.raises(ValueError):
        Bind("a-system-id-too-long", "secret").encode()
    with pytest.raises(ValueError):
        ShortMessage("1", "2", b"x" * 255).encode()


async def test_an_unreadable_length_ends_the_connection() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"\xff\xff\xff\xff")
    with pytest.raises(InvalidPdu):
        await read_pdu(reader)
