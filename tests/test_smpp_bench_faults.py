"""What the SMPP fan-out benchmark (bench/fanout/smpp.py) needs of the sandbox SMSC and
of the channel: an SMSC that holds a bind to N submit_sm a second, the session's
pacing once throttled, receipts that are reported again when their hand-over failed,
and the pure parts made cheaper for a 10,000-person fan-out (each checked against the
slower form it replaced)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from coordinator.channels.smpp import DeliveryReport
from coordinator.channels.smpp.bodies import ESM_RECEIPT, ShortMessage
from coordinator.channels.smpp.pacing import BELOW, GROWTH, Pacing
from coordinator.channels.smpp.receipts import Receipt, _receipt_time
from coordinator.channels.smpp.sent import SentMessages
from coordinator.channels.smpp.text import ESCAPE, GSM7_TABLE, decode_gsm7
from coordinator.clock import ManualClock
from coordinator.errors import SendError
from coordinator.models import DeliveryStatus as S
from coordinator.sandbox.smsc import SandboxSmsc

from .smpp_channels import Channels

T0 = datetime(2026, 11, 24, 2, 0)


class Flaky:
    """on_receipt that fails the first `fail` hand-overs (as a service too slow to take them)."""

    def __init__(self, fail: int = 0, delay: float = 0.0) -> None:
        self.fail, self.delay = fail, delay
        self.reports: list[DeliveryReport] = []
        self.tries = 0

    async def receipt(self, report: DeliveryReport) -> None:
        self.tries += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            raise TimeoutError("the service did not take it in time")
        self.reports.append(report)

    async def reply(self, _: object) -> None:
        return None


@pytest.fixture
async def channel_for(clock: ManualClock) -> AsyncIterator[Any]:
    channels = Channels(clock)
    yield channels.open
    await channels.close()


async def test_the_sandbox_takes_at_most_throttle_rate_submits_a_second(clock: ManualClock, channel_for: Any) -> None:
    async with SandboxSmsc(clock=clock, receipt_delay=0.01, throttle_rate=3) as smsc:
        channel = channel_for(smsc, Flaky(), throttle_attempts=1)
        for n in range(3):
            await channel.send_sms(f"d{n}", f"+861380000000{n}", "1 ABC")
        with pytest.raises(SendError) as caught:
            await channel.send_sms("d3", "+8613800000003", "1 ABC")
        assert (caught.value.code, caught.value.retryable) == ("ESME_RTHROTTLED", True)
        assert smsc.throttled == 1 and len(smsc.parts) == 3
        clock.advance(timedelta(seconds=1))  # the sliding second has passed
        await channel.send_sms("d3", "+8613800000003", "1 ABC")
        assert [p.taken_at for p in smsc.parts] == [T0.replace(tzinfo=clock.now().tzinfo)] * 3 + [clock.now()]
        await smsc.settled(timeout=2)
        assert smsc.receipts == 4


async def test_a_receipt_whose_hand_over_failed_is_reported_when_it_comes_again(clock: ManualClock,
                                                                                  channel_for: Any) -> None:
    heard = Flaky(fail=1)
    async with SandboxSmsc(clock=clock, receipt_delay=0.01) as smsc:
        channel = channel_for(smsc, heard)
        accepted = await channel.send_sms("d", "+8613800000001", "1 ABC")
        await smsc.settled(timeout=3)  # answered ESME_RX_T_APPN once, then delivered again
    assert heard.tries == 2
    assert heard.reports == [DeliveryReport(accepted.provider_id, S.delivered, None, "d")]


def _receipt_pdu(message_id: str) -> ShortMessage:
    text = f"id:{message_id} sub:001 dlvrd:001 submit date:2611240200 done date:2611240200 stat:DELIVRD err:000 text:"
    return ShortMessage("8613800000001", "1065712345", text.encode(), esm_class=ESM_RECEIPT)


async def test_a_second_copy_of_a_receipt_is_answered_as_the_first_ends(clock: ManualClock,
                                                                         channel_for: Any) -> None:
    # The SMSC stopped waiting for our answer and sent the receipt again while the first
    # copy's report was still being handed on. If that hand-over fails, the second copy
    # must not be answered ESME_ROK: that would end the receipt with nothing recorded.
    heard = Flaky(fail=1, delay=0.05)
    async with SandboxSmsc(clock=clock, receipt_delay=60) as smsc:
        channel = channel_for(smsc, heard)
        accepted = await channel.send_sms("d", "+8613800000001", "1 ABC")
        first = asyncio.create_task(channel._delivered(_receipt_pdu(accepted.provider_id)))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(channel._delivered(_receipt_pdu(accepted.provider_id)))
        results = await asyncio.gather(first, second, return_exceptions=True)
        assert all(isinstance(r, Exception) for r in results) and heard.tries == 1
        await channel._delivered(_receipt_pdu(accepted.provider_id))  # the SMSC's next try
        assert [r.status for r in heard.reports] == [S.delivered]


def test_expire_looks_at_the_oldest_only_and_a_failed_report_can_be_made_again() -> None:
    sent = SentMessages(keep_for=timedelta(minutes=10))
    for n in range(5):
        sent.add(f"d{n}", [f"p{n}"], T0 + timedelta(minutes=n))
    assert sent.expire(T0 + timedelta(minutes=12)) == []
    assert [sent.get(f"p{n}") is None for n in range(5)] == [True, True, False, False, False]
    [report] = sent.receipt(Receipt("p4", "DELIVRD"), T0)
    assert sent.receipt(Receipt("p4", "DELIVRD"), T0) == []
    sent.unreported(report)
    assert sent.receipt(Receipt("p4", "DELIVRD"), T0) == [report]
    sent.receipt(Receipt("x1", "UNDELIV"), T0)
    sent.receipt(Receipt("x2", "UNDELIV"), T0 + timedelta(minutes=3))
    sent.receipt(Receipt("x1", "UNDELIV"), T0 + timedelta(minutes=4))  # again: it waits from now
    assert [r.provider_id for r in sent.expire(T0 + timedelta(minutes=8, seconds=30))] == ["x2"]
    assert [r.provider_id for r in sent.expire(T0 + timedelta(minutes=9, seconds=30))] == ["x1"]


# The pacing, table by table: (what happens, at, with) -> the pause begun / the rate.

def test_no_pacing_until_throttled_then_the_rate_accepted_in_the_last_second() -> None:
    pacing = Pacing(min_pause=1.0, max_pause=8.0)
    assert [pacing.book(0.0) for _ in range(3)] == [0.0, 0.0, 0.0] and pacing.rate is None
    for k in range(500):
        pacing.accepted(0.1 + k * 0.0002)
    assert pacing.throttled(0.2, sent_in=0) == 1.0  # unpaced: pause, and the rate learnt
    assert pacing.rate == pytest.approx(500 * BELOW)
    assert pacing.throttled(0.2, sent_in=0) == 0.0  # the same burst: nothing new
    assert pacing.book(0.3) == pytest.approx(0.9)  # the pause holds for all; then on the rate's grid
    assert pacing.book(0.3) == pytest.approx(0.9 + 1 / (500 * BELOW))
    assert pacing.book(5.0) == 0.0  # after an idle spell: at once


def test_paced_a_first_throttle_only_cuts_the_rate_and_a_streak_pauses_doubling() -> None:
    pacing = Pacing(min_pause=1.0, max_pause=3.0)
    for k in range(200):
        pacing.accepted(k * 0.005)
    pacing.throttled(1.0, sent_in=0)
    pacing.accepted(2.0)
    assert pacing.streak == 0
    assert pacing.throttled(2.1, sent_in=1) == 0.0  # paced: the rate met in a bunch
    assert [pacing.throttled(2.2 + k, sent_in=pacing.epoch) for k in range(3)] == [1.0, 2.0, 3.0]


def test_the_rate_grows_while_it_holds_requests_back() -> None:
    pacing = Pacing(min_pause=1.0, max_pause=3.0)
    for k in range(100):
        pacing.accepted(k * 0.01)
    pacing.throttled(1.0, sent_in=0)  # learns 97/s and pauses 1 s
    rate = pacing.rate
    assert rate is not None
    now = 2.0
    for _ in range(300):
        now += pacing.book(now)
        pacing.accepted(now)
    assert pacing.rate is not None and rate * GROWTH ** 2 < pacing.rate < rate * GROWTH ** 5  # once a second, ~3 s


def test_receipt_times_read_as_strptime_reads_them() -> None:
    for value in ["2611240200", "261124020059", "6901010000", "6812312359", "0002290000", "0102290000",
                  "261324020000", "26112402", "26112402005x", "", None]:
        pattern = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S"}.get(len(value or ""))
        try:
            expected = datetime.strptime(value, pattern) if value and pattern and value.isdigit() else None
        except ValueError:
            expected = None
        assert _receipt_time(value) == expected, value


def test_gsm7_decoding_without_escapes_is_the_table_read_octet_by_octet() -> None:
    rng = random.Random(3)
    codes = [c for c in range(128) if c != ESCAPE]
    for _ in range(300):
        data = bytes(rng.choice(codes) for _ in range(rng.randrange(160)))
        assert decode_gsm7(data) == "".join(GSM7_TABLE[c] for c in data)
