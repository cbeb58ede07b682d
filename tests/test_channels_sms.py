"""TwilioSms with the real twilio client against the Twilio sandbox on loopback."""

from __future__ import annotations

import urllib.parse

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from coordinator.channels import SmsChannel, TwilioConfig, TwilioSms, map_twilio_status
from coordinator.clock import ManualClock
from coordinator.errors import SendError
from coordinator.models import DeliveryStatus
from coordinator.sandbox import Delivery, Faults, TwilioSandbox, sms_segments

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "sandbox-auth-token"
SENDER = "+15005550006"
SERVICE = "MG" + "fedcba9876543210" * 2
POOL = ("+15005550007",)
STAFF = "+8613800138000"
CALLBACK = "http://127.0.0.1:8080/hooks/twilio/status"
DELIVERY = "INC-20261124-3f9a2c:2:chen-li:sms"
SCRIPT = (
    "【统一解释口径 v2】杭州西湖区移动网络故障，部分客户通话和上网受影响。对客统一回复："
    "“非常抱歉，技术人员正在全力抢修，预计18:00前恢复。”不承诺补偿。回复1确认收到。"
)
# Status steps far in the future: no callbacks are POSTed while a test runs.
QUIET = Delivery(step_delay=60, receipt_delay=60)

Sandboxes = Callable[..., TwilioSandbox]
Channels = Callable[..., TwilioSms]


@pytest.fixture
async def sandboxes(clock: ManualClock) -> AsyncIterator[Sandboxes]:
    """Builds sandboxes on the test's clock; each is started by the test and stopped here."""
    made: list[TwilioSandbox] = []

    def make(faults: Faults | None = None, **options: Any) -> TwilioSandbox:
        sandbox = TwilioSandbox(
            ACCOUNT_SID,
            AUTH_TOKEN,
            numbers=[SENDER],
            messaging_services={SERVICE: POOL},
            clock=clock,
            seed=7,
            delivery=QUIET,
            faults=faults,
            **options,
        )
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        await sandbox.stop()


@pytest.fixture
async def channels(clock: ManualClock) -> AsyncIterator[Channels]:
    made: list[TwilioSms] = []

    def make(base_url: str, **overrides: Any) -> TwilioSms:
        config = TwilioConfig(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            from_number=SENDER,
            status_callback_url=CALLBACK,
            request_timeout_seconds=0.3,
            base_url=base_url,
        )
        channel = TwilioSms(replace(config, **overrides), clock=clock)
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.close()


async def send_error(channel: SmsChannel, to: str = STAFF, text: str = SCRIPT) -> SendError:
    with pytest.raises(SendError) as caught:
        await channel.send_sms(DELIVERY, to, text)
    assert caught.value.delivery_id == DELIVERY
    return caught.value


class Gateway:
    """In front of a sandbox: passes reads straight through, but holds each create
    `hold` seconds, then passes it on if `forward` (Twilio creating a message after the
    client gave up), else answers `answer` without creating anything."""

    def __init__(
        self,
        sandbox: TwilioSandbox,
        hold: float,
        forward: bool,
        answer: tuple[int, dict[str, Any] | None] = (504, None),
    ) -> None:
        self._sandbox, self._hold, self._forward, self._answer = sandbox, hold, forward, answer
        self.forwarded = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.base_url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._pass)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    async def _pass(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        if request.method == "POST":
            await asyncio.sleep(self._hold)
            if not self._forward:
                status, problem = self._answer
                return web.Response(status=status) if problem is None else web.json_response(problem, status=status)
        headers = {k: v for k, v in request.headers.items() if k in ("Authorization", "Content-Type")}
        url = self._sandbox.base_url + request.path_qs
        async with self._session.request(request.method, url, data=body, headers=headers) as answer:
            text = await answer.text()
        if request.method == "POST":
            self.forwarded.set()
        return web.Response(status=answer.status, text=text, content_type="application/json")


# -- sending ---------------------------------------------------------------------------


async def test_chinese_script_is_sent_from_the_number_with_the_status_callback(
    sandboxes: Sandboxes, channels: Channels
) -> None:
    sandbox = sandboxes()
    await sandbox.start()
    channel = channels(sandbox.base_url)

    accepted = await channel.send_sms(DELIVERY, STAFF, SCRIPT)

    [message] = sandbox.received_by(STAFF)
    assert accepted.provider_id == message.sid and accepted.status == "queued"
    assert message.body == SCRIPT
    assert message.from_ == SENDER and message.messaging_service_sid is None
    # the delivery rides in the callback URL, so a callback that beats the SID is placed
    assert message.status_callback == f"{CALLBACK}?delivery={urllib.parse.quote(DELIVERY, safe=':')}"
    segments = sms_segments(SCRIPT)
    assert segments.encoding == "UCS-2" and message.num_segments == segments.segments == 2


async def test_messaging_service_sends_without_a_from_number(sandboxes: Sandboxes, channels: Channels) -> None:
    sandbox = sandboxes()
    await sandbox.start()
    channel = channels(sandbox.base_url, from_number=None, messaging_service_sid=SERVICE, status_callback_url=None)

    accepted = await channel.send_sms(DELIVERY, STAFF, SCRIPT)

    [message] = sandbox.received_by(STAFF)
    assert accepted.provider_id == message.sid and accepted.status == "accepted"
    assert message.messaging_service_sid == SERVICE and message.status_callback is None


# -- refusals ----------------------------------------------------------------------------


async def test_invalid_number_is_permanent(sandboxes: Sandboxes, channels: Channels) -> None:
    sandbox = sandboxes()
    await sandbox.start()

    error = await send_error(channels(sandbox.base_url), to="13800138000")  # national format

    assert (error.code, error.permanent, error.retryable) == ("21211", True, False)


async def test_after_stop_the_recipient_is_permanent(sandboxes: Sandboxes, channels: Channels) -> None:
    sandbox = sandboxes()
    await sandbox.start()
    await sandbox.reply(STAFF, SENDER, "STOP")

    error = await send_error(channels(sandbox.base_url))

    assert (error.code, error.permanent, error.retryable) == ("21610", True, False)
    assert sandbox.received_by(STAFF) == []


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"from_number": "+15005550009"}, "21606"),  # not one of the account's numbers
        ({"auth_token": "wrong"}, "20003"),
    ],
)
async def test_configuration_problems_are_neither_retryable_nor_permanent(
    sandboxes: Sandboxes, channels: Channels, overrides: dict[str, object], code: str
) -> None:
    sandbox = sandboxes()
    await sandbox.start()

    error = await send_error(channels(sandbox.base_url, **overrides))

    assert (error.code, error.permanent, error.retryable) == (code, False, False)
    assert "configuration" in error.message


@pytest.mark.parametrize(
    ("faults", "code"),
    [(Faults(too_many_requests_rate=1.0), "20429"), (Faults(server_error_rate=1.0), "20500")],
)
async def test_rate_limit_and_server_error_are_retryable_and_create_nothing(
    sandboxes: Sandboxes, channels: Channels, faults: Faults, code: str
) -> None:
    sandbox = sandboxes(faults)
    await sandbox.start()

    error = await send_error(channels(sandbox.base_url))

    assert (error.code, error.permanent, error.retryable) == (code, False, True)
    assert sandbox.messages == []


async def test_a_problem_details_error_is_mapped_too(sandboxes: Sandboxes, channels: Channels) -> None:
    """The client raises TwilioServiceException, not TwilioRestException, for an RFC 9457 body."""
    sandbox = sandboxes()
    await sandbox.start()
    problem = {
        "type": "https://www.twilio.com/docs/errors/21610",
        "title": "Attempt to send to unsubscribed recipient",
        "status": 400,
        "code": 21610,
    }
    gateway = Gateway(sandbox, hold=0, forward=False, answer=(400, problem))
    await gateway.start()
    try:
        error = await send_error(channels(gateway.base_url))
    finally:
        await gateway.stop()

    assert (error.code, error.permanent, error.retryable) == ("21610", True, False)
    assert "unsubscribed" in error.message


async def test_unreachable_twilio_is_retryable() -> None:
    with socket.socket() as probe:  # a free port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel: SmsChannel = TwilioSms(
        TwilioConfig(ACCOUNT_SID, AUTH_TOKEN, from_number=SENDER, base_url=f"http://127.0.0.1:{port}")
    )
    try:
        error = await send_error(channel)
    finally:
        await channel.close()

    assert (error.code, error.retryable) == ("connection", True)


# -- unclear outcomes: never post blindly again ------------------------------------------


@pytest.mark.parametrize(
    ("sender", "status"),
    [({}, "queued"), ({"from_number": None, "messaging_service_sid": SERVICE}, "accepted")],
)
async def test_slow_answer_finds_the_created_message_instead_of_posting_again(
    sandboxes: Sandboxes, channels: Channels, sender: dict[str, Any], status: str
) -> None:
    sandbox = sandboxes(Faults(slow_rate=1.0, slow_seconds=1.0))
    await sandbox.start()

    accepted = await channels(sandbox.base_url, **sender).send_sms(DELIVERY, STAFF, SCRIPT)

    [message] = sandbox.received_by(STAFF)
    assert accepted.provider_id == message.sid and accepted.status == status


async def test_timeout_with_nothing_created_is_retryable(sandboxes: Sandboxes, channels: Channels) -> None:
    sandbox = sandboxes()
    await sandbox.start()
    gateway = Gateway(sandbox, hold=1.0, forward=False)
    await gateway.start()
    try:
        error = await send_error(channels(gateway.base_url))
    finally:
        await gateway.stop()

    assert (error.code, error.permanent, error.retryable) == ("timeout", False, True)
    assert sandbox.messages == []


async def test_gateway_timeout_is_checked_like_a_timeout(sandboxes: Sandboxes, channels: Channels) -> None:
    sandbox = sandboxes()
    await sandbox.start()
    gateway = Gateway(sandbox, hold=0, forward=False)  # answers 504 at once
    await gateway.start()
    try:
        error = await send_error(channels(gateway.base_url))
    finally:
        await gateway.stop()

    assert (error.code, error.permanent, error.retryable) == ("504", False, True)
    assert "no message to" in error.message


async def test_an_identical_earlier_message_is_not_taken_for_this_attempt(
    sandboxes: Sandboxes, channels: Channels, clock: ManualClock
) -> None:
    sandbox = sandboxes()
    await sandbox.start()
    reminder = await channels(sandbox.base_url).send_sms("INC-20261124-3f9a2c:2:chen-li:sms-r1", STAFF, SCRIPT)
    clock.advance(timedelta(minutes=10))
    gateway = Gateway(sandbox, hold=1.0, forward=False)
    await gateway.start()
    try:
        error = await send_error(channels(gateway.base_url))
    finally:
        await gateway.stop()

    assert error.code == "timeout" and error.retryable
    assert [m.sid for m in sandbox.received_by(STAFF)] == [reminder.provider_id]


async def test_retry_after_a_timeout_finds_a_message_created_late(sandboxes: Sandboxes, channels: Channels) -> None:
    sandbox = sandboxes()
    await sandbox.start()
    gateway = Gateway(sandbox, hold=0.6, forward=True)
    await gateway.start()
    channel = channels(gateway.base_url)
    try:
        error = await send_error(channel)  # gave up at 0.3 s; nothing there yet
        assert error.code == "timeout" and error.retryable
        await asyncio.wait_for(gateway.forwarded.wait(), 5)

        accepted = await channel.send_sms(DELIVERY, STAFF, SCRIPT)
    finally:
        await gateway.stop()

    [message] = sandbox.received_by(STAFF)
    assert accepted.provider_id == message.sid


# -- config and statuses -----------------------------------------------------------------


@pytest.mark.parametrize("max_connections", [100, 130])
async def test_sends_in_flight_are_bounded_by_max_connections(
    sandboxes: Sandboxes, channels: Channels, max_connections: int
) -> None:
    """The connection pool, not aiohttp's default of 100, sets how many sends are in
    flight: over a real network that is what the outbox's concurrency buys."""
    sandbox = sandboxes(latency=0.5)
    await sandbox.start()
    channel = channels(sandbox.base_url, max_connections=max_connections, request_timeout_seconds=10)
    await asyncio.gather(*(channel.send_sms(f"INC-20261124-3f9a2c:1:p{i}:sms", STAFF, SCRIPT) for i in range(150)))
    assert len(sandbox.messages) == 150
    assert sandbox.peak_concurrency == max_connections


@pytest.mark.parametrize(
    "overrides",
    [
        {"from_number": None},
        {"messaging_service_sid": SERVICE},
        {"validity_period_seconds": 0},
        {"validity_period_seconds": 36001},
        {"request_timeout_seconds": 0},
        {"max_connections": 0},
    ],
)
def test_config_is_validated(overrides: dict[str, object]) -> None:
    config = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": SENDER, **overrides}
    with pytest.raises(ValueError):
        TwilioConfig(**config)  # type: ignore[arg-type]


def test_config_repr_hides_the_auth_token() -> None:
    assert AUTH_TOKEN not in repr(TwilioConfig(ACCOUNT_SID, AUTH_TOKEN, from_number=SENDER))


@pytest.mark.parametrize(
    ("twilio", "ours"),
    [
        ("scheduled", DeliveryStatus.queued),
        ("accepted", DeliveryStatus.queued),
        ("queued", DeliveryStatus.queued),
        ("sending", DeliveryStatus.sending),
        ("sent", DeliveryStatus.sent),
        ("delivered", DeliveryStatus.delivered),
        ("read", DeliveryStatus.delivered),
        ("partially_delivered", DeliveryStatus.undelivered),
        ("undelivered", DeliveryStatus.undelivered),
        ("failed", DeliveryStatus.failed),
        ("canceled", DeliveryStatus.failed),
        ("Delivered", DeliveryStatus.delivered),
    ],
)
def test_map_twilio_status(twilio: str, ours: DeliveryStatus) -> None:
    assert map_twilio_status(twilio) == ours


@pytest.mark.parametrize("status", ["received", "receiving", "", "bogus"])
def test_map_twilio_status_refuses_what_an_outbound_message_never_has(status: str) -> None:
    with pytest.raises(ValueError):
        map_twilio_status(status)
