"""The WeCom channel: the client against the WeCom sandbox over loopback, the sandbox
against WeCom's documented examples, and the callback from button to grey 已确认."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from coordinator.channels.messenger import CardClick, SlidingWindows
from coordinator.channels.wecom import WeComClient, WeComConfig
from coordinator.channels.wecom_crypto import WeComCrypto, read_card_click
from coordinator.clock import ManualClock
from coordinator.errors import CallbackRefused, SendError
from coordinator.sandbox.wecom import WeComSandbox

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vendors" / "wecom"  # sources: its README
CORP, SECRET, AGENT = "ww0123456789abcdef", "corp-secret", 1000002
TOKEN, AES_KEY = "cb-token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
STAFF = ("ChenLi", "WangFang", "ZhaoLei")
START = datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc)


def documented(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def assert_shape(example: Any, actual: Any) -> None:
    """The same keys, and values of the same JSON types, as the documented example."""
    assert type(actual) is type(example), (actual, example)
    if isinstance(example, dict):
        assert set(actual) == set(example)
        for key in example:
            assert_shape(example[key], actual[key])
    elif isinstance(example, list) and example and actual:
        for item in actual:
            assert_shape(example[0], item)


@dataclass
class Receiver:
    """The coordinator's end of the callback: verifies, decrypts, records the press, and
    answers at once (WeCom wants an answer within five seconds)."""

    crypto: WeComCrypto
    clock: ManualClock
    url: str = ""
    clicks: list[CardClick] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        query = {k: v for k, v in request.query.items()}
        try:
            if request.method == "GET":
                return web.Response(text=self.crypto.check_url(query, now=self.clock.now()))
            click = read_card_click(self.crypto.open_callback(query, await request.read(), now=self.clock.now()))
        except CallbackRefused as exc:
            self.refused.append(exc.reason)
            return web.Response(status=403)
        if click is not None:
            self.clicks.append(click)
        return web.Response(text="")


@dataclass
class World:
    clock: ManualClock
    sandbox: WeComSandbox
    client: WeComClient
    receiver: Receiver


MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
async def world(aiohttp_server: Callable[..., Awaitable[Any]]) -> AsyncIterator[MakeWorld]:
    opened: list[World] = []

    async def make(*, client_options: dict[str, Any] | None = None, **options: Any) -> World:
        clock = ManualClock(START)
        receiver = Receiver(WeComCrypto(TOKEN, AES_KEY, CORP), clock)
        app = web.Application()
        app.router.add_route("*", "/hooks/wecom", receiver.handle)
        server = await aiohttp_server(app)
        receiver.url = str(server.make_url("/hooks/wecom"))
        options.setdefault("callback_url", receiver.url)
        sandbox = WeComSandbox(CORP, SECRET, AGENT, users=STAFF, clock=clock, callback_token=TOKEN,
                               encoding_aes_key=AES_KEY, seed=7, **options)
        await sandbox.start()
        client = WeComClient(WeComConfig(CORP, SECRET, AGENT, base_url=sandbox.base_url, **(client_options or {})),
                             clock=clock)
        opened.append(World(clock, sandbox, client, receiver))
        return opened[-1]

    yield make
    for w in opened:
        await w.client.close()
        await w.sandbox.stop()


# -- the sandbox against the documented examples ------------------------------------------


async def test_sandbox_answers_the_documented_requests_in_the_documented_shapes() -> None:
    clock = ManualClock(START)
    sandbox = WeComSandbox("ID", "SECRET", 1, users=("UserID1", "UserID2"), clock=clock,
                           callback_url="http://127.0.0.1:9/unused", callback_token=TOKEN, encoding_aes_key=AES_KEY)
    await sandbox.start()
    try:
        async with aiohttp.ClientSession(sandbox.base_url) as http:
            token_request = documented("gettoken.request.json")
            async with http.get(token_request["path"], params=token_request["query"]) as r:
                token = await r.json()
            assert_shape(documented("gettoken.response.json"), token)
            assert (token["errcode"], token["expires_in"]) == (0, 7200)

            auth = {"access_token": token["access_token"]}
            async with http.post("/cgi-bin/message/send", params=auth,
                                 json=documented("message_send.button_interaction.request.json")) as r:
                sent = await r.json()
            assert_shape(documented("message_send.response.json"), sent)
            # UserID3 is no member; userids come back lower-cased; no parties or tags here.
            assert (sent["errcode"], sent["invaliduser"], sent["invalidparty"]) == (0, "userid3", "PartyID1|PartyID2")

            update = documented("update_template_card.request.json") | {"response_code": sent["response_code"]}
            async with http.post("/cgi-bin/message/update_template_card", params=auth, json=update) as r:
                updated = await r.json()
            assert_shape(documented("update_template_card.response.json"), updated)
            assert updated["invaliduser"] == []  # its userid1 and userid2 are UserID1 and UserID2
    finally:
        await sandbox.stop()
    assert sandbox.cards[0].replaced == {"userid1": "replace_name", "userid2": "replace_name"}


# -- the client against the documented answers ---------------------------------------------


@dataclass
class Canned:
    """A vendor that answers each path with the next of its canned bodies."""

    answers: dict[str, list[dict[str, Any]]]
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.path, dict(request.query), body))
        return web.json_response(self.answers[request.path].pop(0))


async def canned(aiohttp_server: Callable[..., Awaitable[Any]], answers: dict[str, list[dict[str, Any]]]) -> tuple[Canned, str]:
    vendor = Canned(answers)
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", vendor.handle)
    server = await aiohttp_server(app)
    return vendor, str(server.make_url("")).rstrip("/")


async def test_client_reads_the_documented_answers(aiohttp_server: Callable[..., Awaitable[Any]]) -> None:
    vendor, base = await canned(aiohttp_server, {
        "/cgi-bin/gettoken": [documented("gettoken.response.json"), documented("gettoken.response.json")],
        # The documented expired-token answer first: the client fetches a token again, once.
        "/cgi-bin/message/send": [documented("access_token_expired.response.json"), documented("message_send.response.json")],
        "/cgi-bin/message/update_template_card": [documented("update_template_card.response.json")],
    })
    client = WeComClient(WeComConfig(CORP, SECRET, AGENT, base_url=base), clock=ManualClock(START))
    try:
        sent = await client.send_button_card("INC-1:1:chen-li:wecom", ["ChenLi"], "INC-1-v1", "机房断电", "请确认已阅",
                                             key="ack:INC-1:1")
        invalid = await client.update_card_acknowledged("INC-1:1:chen-li:wecom", sent.response_code or "", ["ChenLi"])
    finally:
        await client.close()
    assert (sent.provider_id, sent.response_code) == ("xxxx", "xyzxyz")
    assert sent.rejected == ("userid1", "userid2", "userid3", "userid4")
    assert invalid == ("userid1", "userid2")
    paths = [p for p, _, _ in vendor.requests]
    assert paths.count("/cgi-bin/gettoken") == 2
    card = vendor.requests[-2][2]["template_card"]
    assert card["card_type"] == "button_interaction" and card["button_list"][0]["key"] == "ack:INC-1:1"


# -- tokens ---------------------------------------------------------------------------


async def test_the_token_is_cached_and_fetched_again_before_it_expires(world: MakeWorld) -> None:
    w = await world(token_ttl=7200)
    await w.client.send_button_card("d1", ["ChenLi"], "t1", "a", "b", key="k")
    await w.client.send_button_card("d2", ["WangFang"], "t2", "a", "b", key="k")
    assert w.sandbox.token_fetches == 1
    w.clock.advance(timedelta(seconds=7200 - 299))  # inside the 300 s margin
    await w.client.send_button_card("d3", ["ZhaoLei"], "t3", "a", "b", key="k")
    assert w.sandbox.token_fetches == 2


async def test_a_token_ended_early_is_fetched_again_once(world: MakeWorld) -> None:
    w = await world()
    await w.client.send_button_card("d1", ["ChenLi"], "t1", "a", "b", key="k")
    w.sandbox.expire_tokens()  # the next call with the old token gets 40014
    sent = await w.client.send_button_card("d2", ["WangFang"], "t2", "a", "b", key="k")
    assert sent.provider_id and w.sandbox.token_fetches == 2


async def test_a_wrong_secret_is_a_configuration_error(world: MakeWorld) -> None:
    w = await world()
    client = WeComClient(WeComConfig(CORP, "wrong", AGENT, base_url=w.sandbox.base_url), clock=w.clock)
    with pytest.raises(SendError) as failed:
        await client.send_button_card("d1", ["ChenLi"], "t1", "a", "b", key="k")
    await client.close()
    assert (failed.value.code, failed.value.retryable, failed.value.permanent) == ("40001", False, False)


# -- limits and recipients --------------------------------------------------------------


async def test_the_api_rate_limit_is_retryable(world: MakeWorld) -> None:
    w = await world(calls_per_minute=2)
    for n in (1, 2):
        await w.client.send_button_card(f"d{n}", ["ChenLi"], f"t{n}", "a", "b", key="k")
    with pytest.raises(SendError) as failed:
        await w.client.send_button_card("d3", ["WangFang"], "t3", "a", "b", key="k")
    assert (failed.value.code, failed.value.retryable) == ("45009", True)
    w.clock.advance(timedelta(seconds=61))
    await w.client.send_button_card("d3", ["WangFang"], "t3", "a", "b", key="k")


async def test_the_client_holds_back_what_wecom_would_drop(world: MakeWorld) -> None:
    limits = ((3, 60),)
    w = await world(per_member=limits, client_options={"per_member": limits})
    for n in range(3):
        await w.client.send_button_card(f"d{n}", ["ChenLi"], f"t{n}", "a", "b", key="k")
    with pytest.raises(SendError) as held:
        await w.client.send_button_card("d3", ["ChenLi", "WangFang"], "t3", "a", "b", key="k")
    assert (held.value.code, held.value.retryable) == ("member-rate", True)
    assert "retry in 60 s" in held.value.message
    # Another client of the same app does not know: WeCom takes the call and drops the card.
    other = WeComClient(WeComConfig(CORP, SECRET, AGENT, base_url=w.sandbox.base_url), clock=w.clock)
    sent = await other.send_button_card("d4", ["ChenLi"], "t4", "a", "b", key="k")
    await other.close()
    assert sent.provider_id and w.sandbox.cards[-1].dropped == ["chenli"] and w.sandbox.cards[-1].delivered == []
    w.clock.advance(timedelta(seconds=60))
    await w.client.send_button_card("d5", ["ChenLi"], "t5", "a", "b", key="k")
    assert w.sandbox.cards[-1].delivered == ["chenli"]


@pytest.mark.parametrize(
    ("events", "now", "wait"),
    [
        ([], 0, 0),
        ([0, 10], 20, 0),
        ([0, 10, 20], 30, 30),  # the 0 s send leaves the minute at 60 s
        ([0, 10, 20], 60, 0),
        ([0, 1, 2, 3, 4], 100, 3500),  # five an hour
    ],
)
def test_sliding_windows_say_how_long_to_wait(events: list[int], now: int, wait: int) -> None:
    windows = SlidingWindows([(3, timedelta(minutes=1)), (5, timedelta(hours=1))])
    for t in events:
        windows.record("ChenLi", START + timedelta(seconds=t))
    assert windows.wait("ChenLi", START + timedelta(seconds=now)) == timedelta(seconds=wait)
    assert windows.wait("WangFang", START + timedelta(seconds=now)) == timedelta(0)


async def test_unknown_userids_are_rejected_and_all_unknown_is_permanent(world: MakeWorld) -> None:
    w = await world()
    sent = await w.client.send_button_card("d1", ["ChenLi", "Nobody"], "t1", "a", "b", key="k")
    assert sent.rejected == ("nobody",)
    with pytest.raises(SendError) as failed:
        await w.client.send_button_card("d2", ["Nobody", "Ghost"], "t2", "a", "b", key="k")
    assert (failed.value.code, failed.value.retryable, failed.value.permanent) == ("81013", False, True)


async def test_a_task_id_used_twice_is_refused(world: MakeWorld) -> None:
    w = await world()
    await w.client.send_button_card("d1", ["ChenLi"], "INC-1-v1", "a", "b", key="k")
    with pytest.raises(SendError) as failed:
        await w.client.send_button_card("d2", ["WangFang"], "INC-1-v1", "a", "b", key="k")
    assert (failed.value.code, failed.value.retryable, failed.value.permanent) == ("42014", False, False)


# -- the callback -----------------------------------------------------------------------


async def test_the_callback_url_passes_wecoms_check(world: MakeWorld) -> None:
    w = await world()
    assert await w.sandbox.check_callback_url()


async def test_a_press_reaches_us_and_the_card_turns_grey(world: MakeWorld) -> None:
    w = await world()
    sent = await w.client.send_button_card("INC-1:1:chen-li:wecom", ["ChenLi", "WangFang"], "INC-1-v1", "【应急】机房断电",
                                           "请按口径答复", key="ack:INC-1:1")
    w.clock.advance(timedelta(minutes=3))
    attempt = await w.sandbox.click("ChenLi", "INC-1-v1")
    assert attempt.status == 200
    assert len(w.receiver.clicks) == 1
    click = w.receiver.clicks[0]
    assert (click.userid, click.task_id, click.key) == ("ChenLi", "INC-1-v1", "ack:INC-1:1")

    invalid = await w.client.update_card_acknowledged("INC-1:1:chen-li:wecom", click.response_code or "", [click.userid])
    assert invalid == ()
    card = w.sandbox.card("ChenLi", "INC-1-v1")
    assert card.replaced == {"chenli": "已确认"}  # WangFang's button still live
    with pytest.raises(ValueError):
        await w.sandbox.click("ChenLi", "INC-1-v1")  # a grey button cannot be pressed
    with pytest.raises(SendError) as spent:
        await w.client.update_card_acknowledged("d", click.response_code or "", ["ChenLi"])
    assert (spent.value.code, spent.value.retryable) == ("60140", False)
    # The send's own response_code still serves, once, and expires after 72 hours.
    w.clock.advance(timedelta(hours=72))
    with pytest.raises(SendError):
        await w.client.update_card_acknowledged("d", sent.response_code or "", ["WangFang"])


async def test_a_callback_signed_with_another_token_is_refused(world: MakeWorld) -> None:
    w = await world()
    forger = WeComSandbox(CORP, SECRET, AGENT, users=STAFF, clock=w.clock, callback_url=w.receiver.url,
                          callback_token="not-our-token", encoding_aes_key=AES_KEY, seed=1)
    await forger.start()
    try:
        client = WeComClient(WeComConfig(CORP, SECRET, AGENT, base_url=forger.base_url), clock=w.clock)
        await client.send_button_card("d1", ["ChenLi"], "t1", "a", "b", key="k")
        await client.close()
        attempt = await forger.click("ChenLi", "t1")
    finally:
        await forger.stop()
    assert attempt.status == 403 and w.receiver.refused == ["signature"] and w.receiver.clicks == []


async def test_a_replayed_callback_is_refused(world: MakeWorld) -> None:
    w = await world()
    await w.client.send_button_card("d1", ["ChenLi"], "t1", "a", "b", key="k")
    first = await w.sandbox.click("ChenLi", "t1")
    assert first.status == 200
    w.clock.advance(timedelta(minutes=10))
    async with aiohttp.ClientSession() as http:  # the same request, ten minutes on
        async with http.post(first.url, data=first.sent.encode()) as response:
            assert response.status == 403
    assert w.receiver.refused == ["stale"] and len(w.receiver.clicks) == 1


async def test_an_unanswered_callback_is_tried_three_times(world: MakeWorld) -> None:
    w = await world(callback_url="http://127.0.0.1:9/hooks/wecom")  # nothing listens on the discard port
    await w.client.send_button_card("d1", ["ChenLi"], "t1", "a", "b", key="k")
    attempt = await w.sandbox.click("ChenLi", "t1")
    assert attempt.status is None and len(w.sandbox.callbacks) == 3


async def test_cards_need_a_callback_url(world: MakeWorld) -> None:
    w = await world(callback_url=None)
    with pytest.raises(SendError) as failed:
        await w.client.send_button_card("d1", ["ChenLi"], "t1", "a", "b", key="k")
    assert (failed.value.code, failed.value.retryable) == ("43012", False)
