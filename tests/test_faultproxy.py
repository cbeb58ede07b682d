"""The fault proxy (coordinator/sandbox/faultproxy.py) between the real twilio client and
the Twilio sandbox: what each fault looks like on the wire, what TwilioSms makes of it,
and a storm of all of them in which every phone still gets its SMS exactly once."""

from __future__ import annotations

import asyncio
import errno
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from coordinator.channels.base import Accepted
from coordinator.channels.sms import TwilioConfig, TwilioSms
from coordinator.clock import ManualClock
from coordinator.errors import SendError
from coordinator.sandbox import Delivery, TwilioSandbox
from coordinator.sandbox.faultproxy import DRAWN, Fault, FaultProxy, FaultRates, creates_message, draw_fault

SID = "AC" + "1" * 32
TOKEN = "sandbox-auth-token"
FROM = "+15005550006"
STAFF = "+8613800000001"
TEXT = "【统一口径 v1】西湖区网络故障，预计18:00前恢复。回复1确认收到。"
DELIVERY = "INC-1:1:chen-li:sms"
TIMEOUT = 0.25  # the channel's request timeout
HOLD = 0.6  # a held answer outlasts it
# Status steps far off: the sandbox stays quiet while a test runs.
QUIET = Delivery(step_delay=60, receipt_delay=60)
MESSAGES = f"/2010-04-01/Accounts/{SID}/Messages.json"
AUTH = {"Authorization": aiohttp.encode_basic_auth(SID, TOKEN)}


@pytest.fixture
async def sandbox(clock: ManualClock) -> AsyncIterator[TwilioSandbox]:
    # On the test's clock (conftest's), as the channel is: the look-up after an unclear
    # attempt compares the sandbox's date_created with the channel's `since`.
    async with TwilioSandbox(SID, TOKEN, numbers=(FROM,), clock=clock, seed=3, delivery=QUIET) as running:
        yield running


def channel(proxy: FaultProxy, clock: ManualClock) -> TwilioSms:
    return TwilioSms(TwilioConfig(account_sid=SID, auth_token=TOKEN, from_number=FROM, base_url=proxy.base_url,
                                  request_timeout_seconds=TIMEOUT), clock=clock)


@pytest.mark.parametrize(("roll", "fault"), [
    (0.0, Fault.too_many_requests), (0.09, Fault.too_many_requests), (0.15, Fault.server_error),
    (0.25, Fault.unavailable), (0.35, Fault.reset_before), (0.45, Fault.reset_after), (0.55, Fault.hold),
    (0.65, None), (0.999, None),
])
def test_a_roll_falls_in_its_faults_slice(roll: float, fault: Fault | None) -> None:
    rates = FaultRates(too_many_requests=0.1, server_error=0.1, unavailable=0.1, reset_before=0.1,
                       reset_after=0.1, hold=0.1)
    assert draw_fault(rates, roll) is fault


@pytest.mark.parametrize("bad", [
    {"hold": -0.1}, {"server_error": float("nan")}, {"reset_before": 0.6, "reset_after": 0.5},
    {"hold_seconds": 0.0},
])
def test_rates_are_checked(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FaultRates(**bad)  # type: ignore[arg-type]


def test_rates_may_add_up_to_one() -> None:
    FaultRates(**{kind.value: 1 / 6 for kind in DRAWN})  # 1.0000000000000002 in floats


async def test_a_reset_is_a_connection_reset_on_the_wire(sandbox: TwilioSandbox) -> None:
    async with FaultProxy(sandbox.base_url, FaultRates(reset_before=1.0)) as proxy, \
            aiohttp.ClientSession(headers=AUTH) as http:
        with pytest.raises(aiohttp.ClientOSError) as raised:
            await http.post(proxy.base_url + MESSAGES, data={"To": STAFF, "From": FROM, "Body": TEXT})
        assert raised.value.errno == errno.ECONNRESET
        # A request the predicate does not pick passes, query and all.
        async with http.get(f"{proxy.base_url}{MESSAGES}?PageSize=5") as listed:
            assert listed.status == 200
            assert (await listed.json())["page_size"] == 5
    assert proxy.forwarded == 1 and proxy.injected == {Fault.reset_before: 1}
    assert sandbox.messages == []


@pytest.mark.parametrize(("fault", "status", "code", "message"), [
    (Fault.too_many_requests, 429, 20429, "Too Many Requests"),
    (Fault.server_error, 500, 20500, "Internal Server Error"),
    (Fault.unavailable, 503, 20503, "Service Unavailable"),
])
async def test_an_error_answer_is_twilios(sandbox: TwilioSandbox, fault: Fault, status: int, code: int,
                                          message: str) -> None:
    async with FaultProxy(sandbox.base_url, FaultRates(**{fault.value: 1.0})) as proxy, \
            aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(proxy.base_url + MESSAGES, data={"To": STAFF, "From": FROM, "Body": TEXT}) as answer:
            assert answer.status == status
            assert await answer.json() == {"code": code, "message": message, "status": status,
                                           "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    assert proxy.forwarded == 0 and sandbox.messages == []


@pytest.mark.parametrize(("fault", "code"), [
    (Fault.too_many_requests, "20429"), (Fault.server_error, "20500"), (Fault.unavailable, "20503"),
    (Fault.reset_before, "connection"),
])
async def test_a_fault_before_the_create_is_retryable_and_creates_nothing(
        sandbox: TwilioSandbox, clock: ManualClock, fault: Fault, code: str) -> None:
    async with FaultProxy(sandbox.base_url, FaultRates(**{fault.value: 1.0})) as proxy:
        sms = channel(proxy, clock)
        try:
            with pytest.raises(SendError) as raised:
                await sms.send_sms(DELIVERY, STAFF, TEXT)
            assert raised.value.retryable and not raised.value.permanent
            assert raised.value.code == code
            assert sandbox.received_by(STAFF) == []
            proxy.faults = FaultRates()
            accepted = await sms.send_sms(DELIVERY, STAFF, TEXT)
        finally:
            await sms.close()
    [message] = sandbox.received_by(STAFF)
    assert accepted.provider_id == message.sid
    assert proxy.injected == {fault: 1}
    if fault is Fault.reset_before:
        # In doubt after the reset, the channel looked (nothing), and the retry looked
        # again before posting: two look-ups and one create reached the sandbox.
        assert proxy.forwarded == 3
    else:
        assert proxy.forwarded == 1


@pytest.mark.parametrize("fault", [Fault.reset_after, Fault.hold])
async def test_a_fault_after_the_create_is_found_not_sent_again(
        sandbox: TwilioSandbox, clock: ManualClock, fault: Fault) -> None:
    loop = asyncio.get_running_loop()
    async with FaultProxy(sandbox.base_url, FaultRates(hold_seconds=HOLD, **{fault.value: 1.0})) as proxy:
        sms = channel(proxy, clock)
        try:
            started = loop.time()
            accepted = await sms.send_sms(DELIVERY, STAFF, TEXT)
            took = loop.time() - started
        finally:
            await sms.close()
    [message] = sandbox.received_by(STAFF)
    assert accepted == Accepted(provider_id=message.sid, status=message.status)
    # The create and the look-up that found its message; no second create.
    assert proxy.forwarded == 2 and proxy.injected == {fault: 1}
    if fault is Fault.hold:
        assert TIMEOUT <= took < HOLD  # it gave up at its timeout, not at the held answer


async def test_an_outage_times_out_and_the_retry_after_it_sends_once(
        sandbox: TwilioSandbox, clock: ManualClock) -> None:
    async with FaultProxy(sandbox.base_url) as proxy:
        sms = channel(proxy, clock)
        try:
            proxy.down = True
            with pytest.raises(SendError) as raised:
                await sms.send_sms(DELIVERY, STAFF, TEXT)
            assert raised.value.retryable and raised.value.code == "timeout"
            assert proxy.injected == {Fault.down: 2}  # the create, then the look-up
            proxy.down = False
            accepted = await sms.send_sms(DELIVERY, STAFF, TEXT)
        finally:
            await sms.close()
    [message] = sandbox.received_by(STAFF)
    assert accepted.provider_id == message.sid
    assert proxy.forwarded == 2  # the retry's look-up, then its create


async def test_stopping_releases_held_requests(sandbox: TwilioSandbox) -> None:
    loop = asyncio.get_running_loop()
    proxy = FaultProxy(sandbox.base_url, FaultRates(hold=1.0, hold_seconds=30))
    await proxy.start()
    async with aiohttp.ClientSession(headers=AUTH) as http:
        form = {"To": STAFF, "From": FROM, "Body": TEXT}
        held = asyncio.ensure_future(http.post(proxy.base_url + MESSAGES, data=form))
        while proxy.forwarded == 0:
            await asyncio.sleep(0.01)
        proxy.down = True
        refused = asyncio.ensure_future(http.post(proxy.base_url + MESSAGES, data=form))
        while proxy.injected[Fault.down] == 0:
            await asyncio.sleep(0.01)
        started = loop.time()
        await proxy.stop()
        assert loop.time() - started < 1.0
        answer = await held
        assert answer.status == 201  # a held answer is sent at once
        with pytest.raises(aiohttp.ClientOSError) as raised:
            await refused
        assert raised.value.errno == errno.ECONNRESET  # a request during the outage is reset, never forwarded
    assert len(sandbox.received_by(STAFF)) == 1


async def test_a_storm_of_faults_still_reaches_every_phone_once(sandbox: TwilioSandbox, clock: ManualClock) -> None:
    storm = FaultRates(too_many_requests=0.07, server_error=0.07, unavailable=0.06, reset_before=0.07,
                       reset_after=0.07, hold=0.06, hold_seconds=0.4)
    phones = [f"+86139{i:08d}" for i in range(200)]
    gate = asyncio.Semaphore(25)  # sends in flight at once, as the outbox's sms_concurrency
    errors: Counter[str] = Counter()
    creates = 0

    def counted(request: web.BaseRequest) -> bool:
        nonlocal creates
        creates += creates_message(request)
        return creates_message(request)

    async def deliver(sms: TwilioSms, phone: str) -> tuple[Accepted, int]:
        async with gate:
            for attempt in range(1, 11):
                try:
                    return await sms.send_sms(f"INC-1:1:{phone}:sms", phone, TEXT), attempt
                except SendError as error:
                    assert error.retryable, error
                    errors[error.code] += 1
        raise AssertionError(f"{phone}: no attempt went through")

    async with FaultProxy(sandbox.base_url, storm, seed=11, picks=counted) as proxy:
        sms = channel(proxy, clock)
        try:
            results = await asyncio.gather(*(deliver(sms, phone) for phone in phones))
        finally:
            await sms.close()
    assert set(proxy.injected) == set(DRAWN)
    assert 0.3 < proxy.injected.total() / creates < 0.5
    assert any(attempts > 1 for _, attempts in results), "the storm caused no retry"
    # Each fault before the create cost one retryable error; those after it cost none: the
    # channel found their messages. (A reset's look-up may time out on a busy loop, so its
    # error may say "timeout" instead.)
    for code, fault in [("20429", Fault.too_many_requests), ("20500", Fault.server_error),
                        ("20503", Fault.unavailable)]:
        assert errors[code] == proxy.injected[fault]
    assert errors["connection"] <= proxy.injected[Fault.reset_before] <= errors["connection"] + errors["timeout"]
    assert set(errors) <= {"20429", "20500", "20503", "connection", "timeout"}
    for phone, (accepted, _) in zip(phones, results):
        [message] = sandbox.received_by(phone)  # exactly once
        assert accepted.provider_id == message.sid
    assert len(sandbox.messages) == 200
