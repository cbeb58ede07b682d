"""The Twilio sandbox, driven by the real twilio client over loopback, its answers checked
against Twilio's own OpenAPI description and its webhooks against RequestValidator."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from jsonschema import FormatChecker
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from coordinator.clock import ManualClock
from coordinator.sandbox import (
    DELIVERY_ERRORS,
    Delivery,
    Faults,
    RateLimit,
    TwilioSandbox,
    point_client,
    sandbox_client,
    sms_segments,
)

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "sandbox-auth-token"
SENDER = "+15005550006"
SERVICE = "MG" + "fedcba9876543210" * 2
POOL = ("+15005550007", "+15005550008")
STAFF = "+8613800138000"
FAST = Delivery(step_delay=0.005, receipt_delay=0.005)

SPEC_PATH = Path(__file__).resolve().parent / "fixtures" / "twilio" / "messages-openapi.json"  # licence: its README
SPEC = json.loads(SPEC_PATH.read_text())
MESSAGE_SCHEMA = SPEC["components"]["schemas"]["api.v2010.account.message"]
LIST_SCHEMA = SPEC["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["get"]["responses"]["200"][
    "content"
]["application/json"]["schema"]

FORMATS = FormatChecker()
FORMATS.checkers.update(oas30_format_checker.checkers)


def _is_rfc2822(value: object) -> bool:
    return not isinstance(value, str) or parsedate_to_datetime(value).tzinfo is not None


def _is_e164(value: object) -> bool:
    return not isinstance(value, str) or (value.startswith("+") and value[1:].isdigit())


# Twilio's own formats, which jsonschema does not know.
FORMATS.checks("date-time-rfc-2822", raises=(TypeError, ValueError))(_is_rfc2822)
FORMATS.checks("phone-number")(_is_e164)


def assert_matches(schema: dict[str, Any], instance: dict[str, Any]) -> None:
    """Valid under the OpenAPI schema, and carrying every field it describes: Twilio
    sends them all (null when empty), though the schema marks none required."""
    OAS30Validator({**schema, "components": SPEC["components"]}, format_checker=FORMATS).validate(instance)
    assert set(instance) == set(schema["properties"])


# -- fixtures -------------------------------------------------------------------------


@dataclass
class Webhook:
    url: str
    params: dict[str, str]
    signature: str
    token: str


@dataclass
class Receiver:
    """The coordinator's side: collects the webhooks the sandbox POSTs."""

    base_url: str = ""
    received: list[Webhook] = field(default_factory=list)
    answer: str = "<Response/>"  # what an inbound webhook is answered with (TwiML)

    def url(self, path: str) -> str:
        return self.base_url + path

    def at(self, path: str) -> list[Webhook]:
        return [w for w in self.received if w.url.endswith(path)]

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.received.append(
            Webhook(
                url=str(request.url),
                params={k: str(v) for k, v in form.items()},
                signature=request.headers.get("X-Twilio-Signature", ""),
                token=request.headers.get("I-Twilio-Idempotency-Token", ""),
            )
        )
        return web.Response(text=self.answer, content_type="text/xml")


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[Any]]) -> Receiver:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{hook:.*}", receiver.handle)
    server = await aiohttp_server(app)
    receiver.base_url = str(server.make_url("")).rstrip("/")
    return receiver


MakeSandbox = Callable[..., Awaitable[tuple[TwilioSandbox, Client]]]


@pytest.fixture
async def make_sandbox() -> AsyncIterator[MakeSandbox]:
    started: list[tuple[TwilioSandbox, Client]] = []

    async def make(**options: Any) -> tuple[TwilioSandbox, Client]:
        options.setdefault("delivery", FAST)
        options.setdefault("numbers", (SENDER,))
        options.setdefault("messaging_services", {SERVICE: POOL})
        sandbox = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, **options)
        await sandbox.start()
        client = sandbox_client(sandbox)
        started.append((sandbox, client))
        return sandbox, client

    yield make
    for sandbox, client in started:
        await client.http_client.close()
        await sandbox.stop()


def basic_auth(login: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


async def raw(
    sandbox: TwilioSandbox, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
) -> tuple[int, Any]:
    """A request without the twilio client, to see the JSON exactly as sent."""
    headers = basic_auth(ACCOUNT_SID, AUTH_TOKEN) if headers is None else headers
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, sandbox.base_url + path, headers=headers, **kwargs) as response,
    ):
        return response.status, await response.json()


MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def assert_signed(webhook: Webhook) -> None:
    assert RequestValidator(AUTH_TOKEN).validate(webhook.url, webhook.params, webhook.signature)
    assert not RequestValidator("another-token").validate(webhook.url, webhook.params, webhook.signature)


# -- the resource and the list ---------------------------------------------------------


async def test_create_fetch_list_round_trip_matches_openapi(make_sandbox: MakeSandbox) -> None:
    sandbox, client = await make_sandbox()
    created = await client.messages.create_async(to=STAFF, from_=SENDER, body="机房断电，请按口径答复。")
    assert (created.status, created.from_, created.num_segments, created.direction) == (
        "queued", SENDER, "1", "outbound-api"
    )
    assert created.sid.startswith("SM") and len(created.sid) == 34
    await sandbox.settled()

    fetched = await client.messages(created.sid).fetch_async()
    assert (fetched.status, fetched.error_code, fetched.body) == ("delivered", None, "机房断电，请按口径答复。")
    assert fetched.date_sent is not None and fetched.date_created is not None

    for n in range(4):
        await client.messages.create_async(to=f"+861380013800{n + 1}", from_=SENDER, body=f"msg {n}")
    everything = await client.messages.list_async(page_size=2)  # the client follows next_page_uri
    assert [m.body for m in everything] == ["msg 3", "msg 2", "msg 1", "msg 0", "机房断电，请按口径答复。"]
    assert [m.sid for m in await client.messages.list_async(to=STAFF)] == [created.sid]
    assert [m.body for m in await client.messages.list_async(to="+8613800138002", from_=SENDER)] == ["msg 1"]

    status, body = await raw(sandbox, "POST", MESSAGES, data={"To": STAFF, "From": SENDER, "Body": "hi"})
    assert status == 201
    assert_matches(MESSAGE_SCHEMA, body)
    status, body = await raw(sandbox, "GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{created.sid}.json")
    assert status == 200
    assert_matches(MESSAGE_SCHEMA, body)
    status, page = await raw(sandbox, "GET", MESSAGES, params={"PageSize": "2"})
    assert status == 200
    assert_matches(LIST_SCHEMA, page)
    paging = (page["page"], page["page_size"], page["start"], page["end"], page["previous_page_uri"])
    assert paging == (0, 2, 0, 1, None)
    status, second = await raw(sandbox, "GET", page["next_page_uri"])
    assert_matches(LIST_SCHEMA, second)
    assert second["page"] == 1 and second["previous_page_uri"] is not None
    assert [m["body"] for m in second["messages"]] == ["msg 2", "msg 1"]


async def test_list_filters_on_date_sent(make_sandbox: MakeSandbox) -> None:
    clock = ManualClock(datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc))
    sandbox, client = await make_sandbox(clock=clock)
    await client.messages.create_async(to=STAFF, from_=SENDER, body="day one")
    await sandbox.settled()
    clock.advance(timedelta(days=1))
    await client.messages.create_async(to=STAFF, from_=SENDER, body="day two")
    await sandbox.settled()
    day_two = datetime(2026, 11, 25, tzinfo=timezone.utc)
    assert [m.body for m in await client.messages.list_async(date_sent=day_two)] == ["day two"]
    assert [m.body for m in await client.messages.list_async(date_sent_before=day_two - timedelta(days=1))] == [
        "day one"
    ]
    assert len(await client.messages.list_async(date_sent_after=day_two - timedelta(days=1))) == 2


async def test_messaging_service_starts_accepted_and_picks_a_sticky_sender(
    make_sandbox: MakeSandbox, receiver: Receiver
) -> None:
    sandbox, client = await make_sandbox()
    created = await client.messages.create_async(
        to=STAFF, messaging_service_sid=SERVICE, body="hi", status_callback=receiver.url("/status")
    )
    assert (created.status, created.from_, created.num_segments) == ("accepted", None, "0")
    again = await client.messages.create_async(to=STAFF, messaging_service_sid=SERVICE, body="again")
    await sandbox.settled()
    first, second = [await client.messages(sid).fetch_async() for sid in (created.sid, again.sid)]
    assert first.from_ in POOL and first.from_ == second.from_
    assert first.num_segments == "1"
    statuses = [w.params["MessageStatus"] for w in receiver.received]
    assert statuses == ["queued", "sending", "sent", "delivered"]
    assert all(w.params["MessagingServiceSid"] == SERVICE for w in receiver.received)


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"to": "13800138000", "from_": SENDER, "body": "x"}, 400, 21211),
        ({"to": "+86 138 0013 8000", "from_": SENDER, "body": "x"}, 400, 21211),
        ({"to": "", "from_": SENDER, "body": "x"}, 400, 21604),
        ({"to": STAFF, "from_": SENDER}, 400, 21602),
        ({"to": STAFF, "body": "x"}, 400, 21603),
        ({"to": STAFF, "from_": "+15550001111", "body": "x"}, 400, 21606),
        ({"to": STAFF, "messaging_service_sid": "MG" + "0" * 32, "body": "x"}, 400, 21705),
        ({"to": STAFF, "from_": SENDER, "body": "x" * 1601}, 400, 21617),
        ({"to": STAFF, "from_": SENDER, "body": "x", "validity_period": 0}, 400, 21624),
        ({"to": STAFF, "from_": SENDER, "body": "x", "validity_period": 36001}, 400, 21624),
        ({"to": STAFF, "from_": SENDER, "body": "x", "status_callback": "http://bad_host/cb"}, 400, 21609),
    ],
)
async def test_invalid_requests_are_refused_like_twilio(
    make_sandbox: MakeSandbox, fields: dict[str, Any], status: int, code: int
) -> None:
    sandbox, client = await make_sandbox()
    with pytest.raises(TwilioRestException) as raised:
        await client.messages.create_async(**fields)
    assert (raised.value.status, raised.value.code) == (status, code)
    assert sandbox.messages == []


async def test_error_body_is_twilios(make_sandbox: MakeSandbox) -> None:
    sandbox, _ = await make_sandbox()
    status, body = await raw(sandbox, "POST", MESSAGES, data={"To": "123", "From": SENDER, "Body": "x"})
    assert status == 400
    assert body == {
        "code": 21211,
        "message": "Invalid 'To' Phone Number: 123",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
    }
    status, body = await raw(sandbox, "GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SM{'0' * 32}.json")
    assert (status, body["code"], body["status"]) == (404, 20404, 404)


async def test_validity_period_limits_are_inclusive(make_sandbox: MakeSandbox) -> None:
    _, client = await make_sandbox()
    for seconds in (1, 36000):
        message = await client.messages.create_async(to=STAFF, from_=SENDER, body="x", validity_period=seconds)
        assert message.status == "queued"


async def test_wrong_credentials_or_account_get_20003(make_sandbox: MakeSandbox) -> None:
    sandbox, _ = await make_sandbox()
    status, body = await raw(sandbox, "GET", MESSAGES, headers=basic_auth(ACCOUNT_SID, "wrong"))
    assert (status, body["code"], body["status"]) == (401, 20003, 401)
    status, body = await raw(sandbox, "GET", MESSAGES, headers={})
    assert (status, body["code"]) == (401, 20003)

    other_account = "AC" + "f" * 32
    client = Client(ACCOUNT_SID, AUTH_TOKEN, account_sid=other_account, http_client=AsyncTwilioHttpClient())
    point_client(client, sandbox.base_url)
    try:
        with pytest.raises(TwilioRestException) as raised:
            await client.messages.create_async(to=STAFF, from_=SENDER, body="x")
        assert (raised.value.status, raised.value.code) == (401, 20003)
    finally:
        await client.http_client.close()


# -- segments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "segments", "units"),
    [
        ("", "GSM-7", 1, 0),
        ("Network outage in Hangzhou, ETA 18:00.", "GSM-7", 1, 38),
        ("a" * 160, "GSM-7", 1, 160),
        ("a" * 161, "GSM-7", 2, 161),
        ("a" * 306, "GSM-7", 2, 306),
        ("a" * 307, "GSM-7", 3, 307),
        ("€" * 80, "GSM-7", 1, 160),  # extension characters cost two septets
        ("{}" * 40 + "a", "GSM-7", 2, 161),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3, 306),  # an escape pair is never split
        ("Ça va? @£$¥", "GSM-7", 1, 11),
        ("ça va", "UCS-2", 1, 5),  # lower-case ç is not in GSM 03.38
        ("你" * 70, "UCS-2", 1, 70),
        ("你" * 71, "UCS-2", 2, 71),
        ("你" * 134, "UCS-2", 2, 134),
        ("你" * 135, "UCS-2", 3, 135),
        ("Hello 你好", "UCS-2", 1, 8),
        ("😀" * 35, "UCS-2", 1, 70),  # outside the BMP: a surrogate pair each
        ("a" + "😀" * 35, "UCS-2", 2, 71),
        ("a" * 66 + "😀" + "a" * 66, "UCS-2", 3, 134),  # a surrogate pair is never split
    ],
)
def test_sms_segments(text: str, encoding: str, segments: int, units: int) -> None:
    assert sms_segments(text) == (encoding, segments, units)


async def test_num_segments_in_the_resource(make_sandbox: MakeSandbox) -> None:
    _, client = await make_sandbox()
    message = await client.messages.create_async(to=STAFF, from_=SENDER, body="你" * 71)
    assert message.num_segments == "2"


# -- status callbacks ----------------------------------------------------------------------


async def test_status_callbacks_are_signed_and_skip_the_first_status(
    make_sandbox: MakeSandbox, receiver: Receiver
) -> None:
    sandbox, client = await make_sandbox()
    message = await client.messages.create_async(
        to=STAFF, from_=SENDER, body="口径 v1", status_callback=receiver.url("/hooks/twilio/status?incident=INC-1")
    )
    await sandbox.settled()
    assert [w.params["MessageStatus"] for w in receiver.received] == ["sending", "sent", "delivered"]
    for webhook in receiver.received:
        assert_signed(webhook)
        assert webhook.url == receiver.url("/hooks/twilio/status?incident=INC-1")
        assert webhook.params["MessageSid"] == webhook.params["SmsSid"] == message.sid
        assert webhook.params["SmsStatus"] == webhook.params["MessageStatus"]
        assert (webhook.params["AccountSid"], webhook.params["From"], webhook.params["To"]) == (
            ACCOUNT_SID, SENDER, STAFF
        )
        assert webhook.params["ApiVersion"] == "2010-04-01"
        assert "ErrorCode" not in webhook.params
    assert [a.answer for a in sandbox.callbacks] == [200, 200, 200]
    assert sandbox.counts() == {"delivered": 1}


@pytest.mark.parametrize(("code", "final"), [(c, "failed" if c == 30008 else "undelivered") for c in DELIVERY_ERRORS])
async def test_configured_failures_per_recipient(
    make_sandbox: MakeSandbox, receiver: Receiver, code: int, final: str
) -> None:
    sandbox, client = await make_sandbox(
        delivery=Delivery(step_delay=0.005, receipt_delay=0.005, failures={STAFF: code})
    )
    message = await client.messages.create_async(to=STAFF, from_=SENDER, body="x", status_callback=receiver.url("/s"))
    ok = await client.messages.create_async(to="+8613900139000", from_=SENDER, body="x")
    await sandbox.settled()
    fetched = await client.messages(message.sid).fetch_async()
    assert (fetched.status, fetched.error_code, fetched.error_message) == (final, code, DELIVERY_ERRORS[code])
    assert (await client.messages(ok.sid).fetch_async()).status == "delivered"
    last = receiver.received[-1]
    assert (last.params["MessageStatus"], last.params["ErrorCode"]) == (final, str(code))
    assert_signed(last)
    assert [m.status for m in sandbox.received_by(STAFF)] == [final]


async def test_duplicate_and_reordered_callbacks(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    sandbox, client = await make_sandbox(
        delivery=Delivery(step_delay=0.005, receipt_delay=0.005, duplicate_rate=1.0, reorder_rate=1.0)
    )
    message = await client.messages.create_async(to=STAFF, from_=SENDER, body="x", status_callback=receiver.url("/s"))
    await sandbox.settled()
    statuses = [w.params["MessageStatus"] for w in receiver.received]
    assert statuses == ["sending", "sending", "delivered", "delivered", "sent", "sent"]
    assert receiver.received[0].token == receiver.received[1].token != receiver.received[2].token
    for webhook in receiver.received:
        assert_signed(webhook)
    assert (await client.messages(message.sid).fetch_async()).status == "delivered"


async def _callback_pattern(make_sandbox: MakeSandbox, receiver: Receiver, seed: int) -> dict[str, list[str]]:
    """Each recipient's callbacks in arrival order (messages run concurrently, so only
    the order within one message is the sandbox's to fix)."""
    delivery = Delivery(
        step_delay=0.001, receipt_delay=0.001, failure_rate=0.3, duplicate_rate=0.3, reorder_rate=0.3
    )
    sandbox, client = await make_sandbox(seed=seed, delivery=delivery)
    path = f"/seed{seed}-{len(receiver.received)}"
    for n in range(12):
        await client.messages.create_async(
            to=f"+86138001380{n:02d}", from_=SENDER, body="x", status_callback=receiver.url(path)
        )
    await sandbox.settled()
    pattern: dict[str, list[str]] = {}
    for webhook in receiver.at(path):
        status = webhook.params["MessageStatus"] + webhook.params.get("ErrorCode", "")
        pattern.setdefault(webhook.params["To"], []).append(status)
    return pattern


async def test_fates_duplicates_and_reordering_replay_under_a_seed(
    make_sandbox: MakeSandbox, receiver: Receiver
) -> None:
    first = await _callback_pattern(make_sandbox, receiver, seed=7)
    assert first == await _callback_pattern(make_sandbox, receiver, seed=7)
    assert first != await _callback_pattern(make_sandbox, receiver, seed=8)
    finals = [statuses[-1] for statuses in first.values()]
    assert any(s.startswith(("undelivered", "failed")) for s in finals)  # some failed
    assert any(s == "sent" for s in finals)  # some reordered: the receipt came before `sent`
    assert sum(map(len, first.values())) > 12 * 3  # some duplicated


# -- opt-out and inbound --------------------------------------------------------------------


async def test_stop_blocks_the_sender_until_start(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    sandbox, client = await make_sandbox(inbound_url=receiver.url("/hooks/twilio/inbound"))
    await client.messages.create_async(to=STAFF, from_=SENDER, body="口径 v1")

    await sandbox.reply(STAFF, SENDER, "please stop sending")  # not a keyword: the whole message counts
    await client.messages.create_async(to=STAFF, from_=SENDER, body="口径 v2")

    await sandbox.reply(STAFF, SENDER, " Stop ")
    assert sandbox.opted_out(STAFF, SENDER)
    with pytest.raises(TwilioRestException) as raised:
        await client.messages.create_async(to=STAFF, from_=SENDER, body="口径 v3")
    assert (raised.value.status, raised.value.code) == (400, 21610)
    await client.messages.create_async(to="+8613900139000", from_=SENDER, body="others still get it")

    await sandbox.reply(STAFF, SENDER, "start")
    await client.messages.create_async(to=STAFF, from_=SENDER, body="口径 v4")
    assert [m.body for m in sandbox.received_by(STAFF)] == ["口径 v1", "口径 v2", "口径 v4"]
    assert [w.params.get("OptOutType") for w in receiver.at("/inbound")] == [None, "STOP", "START"]


async def test_stop_to_a_service_number_blocks_the_whole_service(make_sandbox: MakeSandbox) -> None:
    sandbox, client = await make_sandbox()
    sent = await client.messages.create_async(to=STAFF, messaging_service_sid=SERVICE, body="x")
    await sandbox.settled()
    pool_number = (await client.messages(sent.sid).fetch_async()).from_
    await sandbox.reply(STAFF, pool_number, "UNSUBSCRIBE")
    with pytest.raises(TwilioRestException) as raised:
        await client.messages.create_async(to=STAFF, messaging_service_sid=SERVICE, body="y")
    assert raised.value.code == 21610
    other_number = next(n for n in POOL if n != pool_number)
    with pytest.raises(TwilioRestException):
        await client.messages.create_async(to=STAFF, from_=other_number, body="y")
    await client.messages.create_async(to=STAFF, from_=SENDER, body="a lone number is another sender")


async def test_inbound_webhook_is_signed_and_the_reply_is_listed(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    sandbox, client = await make_sandbox(inbound_url=receiver.url("/hooks/twilio/inbound"))
    reply = await sandbox.reply(STAFF, SENDER, "收到，已按口径答复")
    (webhook,) = receiver.received
    assert_signed(webhook)
    assert webhook.params == {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "Body": "收到，已按口径答复",
        "From": STAFF,
        "MessageSid": reply.sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": reply.sid,
        "SmsSid": reply.sid,
        "SmsStatus": "received",
        "To": SENDER,
    }
    (listed,) = await client.messages.list_async(from_=STAFF)
    assert (listed.direction, listed.status, listed.body) == ("inbound", "received", "收到，已按口径答复")
    with pytest.raises(ValueError):
        await sandbox.reply(STAFF, "+15550009999", "not our number")


async def test_a_twiml_message_in_the_answer_is_sent_back(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    """As Twilio does: <Message> verbs in the answer to the inbound webhook go to the
    sender from the number it wrote to, as outbound-reply messages, without callbacks."""
    sandbox, client = await make_sandbox(inbound_url=receiver.url("/hooks/twilio/inbound"))
    receiver.answer = ('<?xml version="1.0" encoding="UTF-8"?><Response><Message>已确认：口径v1 &lt;K7Q&gt;</Message>'
                       "<Message><Body>第二条</Body></Message></Response>")
    await sandbox.reply(STAFF, SENDER, "1")
    await sandbox.settled()
    answers = [m for m in sandbox.received_by(STAFF)]
    assert [(m.direction, m.from_, m.body, m.status) for m in answers] == [
        ("outbound-reply", SENDER, "已确认：口径v1 <K7Q>", "delivered"), ("outbound-reply", SENDER, "第二条", "delivered")]
    assert receiver.at("/status") == []  # no status callbacks for them
    listed = await client.messages.list_async(to=STAFF)
    assert {m.direction for m in listed} == {"outbound-reply"}
    for empty in ("<Response/>", "", "not xml", "<Other><Message>x</Message></Other>"):
        receiver.answer = empty
        await sandbox.reply(STAFF, SENDER, "1")
    assert len(sandbox.received_by(STAFF)) == 2


# -- rate limits and injected faults --------------------------------------------------------


async def test_rate_limit_per_sender(make_sandbox: MakeSandbox) -> None:
    clock = ManualClock(datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc))
    sandbox, client = await make_sandbox(clock=clock, rate_limit=RateLimit(per_second=2))
    for _ in range(2):
        await client.messages.create_async(to=STAFF, from_=SENDER, body="x")
    with pytest.raises(TwilioRestException) as raised:
        await client.messages.create_async(to=STAFF, from_=SENDER, body="x")
    assert (raised.value.status, raised.value.code) == (429, 20429)
    await client.messages.create_async(to=STAFF, messaging_service_sid=SERVICE, body="another sender")
    clock.advance(timedelta(seconds=1))
    await client.messages.create_async(to=STAFF, from_=SENDER, body="x")
    assert len(sandbox.messages) == 4


async def test_rate_limit_in_segments(make_sandbox: MakeSandbox) -> None:
    clock = ManualClock(datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc))
    _, client = await make_sandbox(clock=clock, rate_limit=RateLimit(per_second=3, unit="segments"))
    await client.messages.create_async(to=STAFF, from_=SENDER, body="你" * 71)  # 2 segments
    with pytest.raises(TwilioRestException) as raised:
        await client.messages.create_async(to=STAFF, from_=SENDER, body="你" * 71)
    assert raised.value.code == 20429
    await client.messages.create_async(to=STAFF, from_=SENDER, body="one more segment fits")


async def _fault_outcomes(make_sandbox: MakeSandbox, seed: int) -> tuple[list[int], int]:
    faults = Faults(too_many_requests_rate=0.25, server_error_rate=0.25)
    sandbox, client = await make_sandbox(seed=seed, faults=faults)
    outcomes = []
    for _ in range(16):
        try:
            await client.messages.create_async(to=STAFF, from_=SENDER, body="x")
            outcomes.append(201)
        except TwilioRestException as exc:
            assert exc.code == {429: 20429, 500: 20500}[exc.status]
            outcomes.append(exc.status)
    return outcomes, len(sandbox.messages)


async def test_injected_faults_replay_under_a_seed_and_record_nothing(make_sandbox: MakeSandbox) -> None:
    outcomes, created = await _fault_outcomes(make_sandbox, seed=11)
    assert (outcomes, created) == await _fault_outcomes(make_sandbox, seed=11)
    assert {429, 500, 201} <= set(outcomes)
    assert created == outcomes.count(201)  # a 500 comes before the message exists, and is not retried
    assert outcomes != (await _fault_outcomes(make_sandbox, seed=12))[0]


async def test_account_concurrency_limit_answers_20429_and_creates_nothing(make_sandbox: MakeSandbox) -> None:
    sandbox, client = await make_sandbox(latency=0.5, concurrency_limit=3)
    outcomes = await asyncio.gather(
        *(client.messages.create_async(to=STAFF, from_=SENDER, body=str(i)) for i in range(5)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, TwilioRestException)]
    assert [(e.status, e.code) for e in refused] == [(429, 20429)] * 2
    assert len(sandbox.messages) == 3
    assert sandbox.peak_concurrency == 5  # the refused were in flight too, until answered
    await client.messages.create_async(to=STAFF, from_=SENDER, body="the slots are free again")
    assert len(sandbox.messages) == 4


async def test_latency_delays_every_answer(make_sandbox: MakeSandbox) -> None:
    sandbox, client = await make_sandbox(latency=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    message = await client.messages.create_async(to=STAFF, from_=SENDER, body="x")
    created = loop.time()
    await client.messages(message.sid).fetch_async()
    assert created - started >= 0.3 and loop.time() - created >= 0.3
    with pytest.raises(ValueError):
        TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, latency=-1)
    with pytest.raises(ValueError):
        TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, concurrency_limit=0)


async def test_slow_answer_outlasts_the_client_timeout_but_the_message_exists(make_sandbox: MakeSandbox) -> None:
    sandbox, client = await make_sandbox(faults=Faults(slow_rate=1.0, slow_seconds=30))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await client.messages.create_async(to=STAFF, from_=SENDER, body="x")
    (message,) = sandbox.messages
    assert message.to == STAFF  # a blind retry would send it twice


# -- no page on this port -----------------------------------------------------------------


async def test_the_port_serves_no_page_to_reply_as_staff(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    """Anyone reaching this port could reply as any staff member: the page is the
    service's, behind its login and CSRF check (tests/test_sandbox_page.py)."""
    sandbox, client = await make_sandbox(inbound_url=receiver.url("/hooks/twilio/inbound"))
    await client.messages.create_async(to=STAFF, from_=SENDER, body="请按口径答复")
    await sandbox.settled()
    async with aiohttp.ClientSession() as session:
        async with session.get(sandbox.base_url + "/sandbox/") as response:
            assert response.status == 404
        form = {"from": STAFF, "to": SENDER, "body": "1"}
        async with session.post(sandbox.base_url + "/sandbox/reply", data=form, allow_redirects=False) as response:
            assert response.status == 404
    assert [m.direction for m in sandbox.messages] == ["outbound-api"]
    assert receiver.at("/inbound") == []
