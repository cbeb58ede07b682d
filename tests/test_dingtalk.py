"""The DingTalk channel: the client against the DingTalk sandbox over loopback, the sandbox
against DingTalk's documented examples, and the card's button opening a signed link."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from coordinator.channels.dingtalk import (
    DingTalkClient,
    DingTalkConfig,
    action_card,
    plan_calls,
)
from coordinator.clock import ManualClock
from coordinator.errors import PartlySent, SendError
from coordinator.models import DeliveryStatus
from coordinator.sandbox.dingtalk import DingTalkSandbox

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vendors" / "dingtalk"  # sources: its README
KEY, SECRET, AGENT = "dingapp0123456789", "app-secret", 2839445214
STAFF = tuple(f"staff{n:03d}" for n in range(250))
START = datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc)
LINK_SECRET = b"ack-link-secret"


def documented(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def assert_shape(example: Any, actual: Any) -> None:
    """The example's keys (at least), with values of the same JSON types."""
    assert type(actual) is type(example), (actual, example)
    if isinstance(example, dict):
        assert set(example) <= set(actual), set(example) - set(actual)
        for key in example:
            assert_shape(example[key], actual[key])
    elif isinstance(example, list) and example and actual:
        for item in actual:
            assert_shape(example[0], item)


# A stand-in for the service's signed acknowledgement link (the real one is
# coordinator/acklinks.py): what matters here is that the sandbox opens the person's link.
def signed_link(base: str, userid: str, incident: str) -> str:
    mac = hmac.new(LINK_SECRET, f"{incident}:{userid}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{base}/ack?i={quote(incident)}&u={quote(userid)}&s={mac}"


@dataclass
class AckPage:
    """The coordinator's acknowledgement page: acknowledges only what it signed."""

    base_url: str = ""
    acked: list[tuple[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        incident, userid, mac = (request.query.get(k, "") for k in ("i", "u", "s"))
        good = hmac.new(LINK_SECRET, f"{incident}:{userid}".encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(mac, good):
            return web.Response(status=403, text="forged")
        self.acked.append((incident, userid))
        return web.Response(text="已确认")


@dataclass
class World:
    clock: ManualClock
    sandbox: DingTalkSandbox
    client: DingTalkClient
    page: AckPage


MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
async def world(aiohttp_server: Callable[..., Awaitable[Any]]) -> AsyncIterator[MakeWorld]:
    opened: list[World] = []

    async def make(**options: Any) -> World:
        clock = ManualClock(START)
        page = AckPage()
        app = web.Application()
        app.router.add_get("/ack", page.handle)
        page.base_url = str((await aiohttp_server(app)).make_url("")).rstrip("/")
        options.setdefault("users", STAFF)
        sandbox = DingTalkSandbox(KEY, SECRET, AGENT, clock=clock, seed=3, **options)
        await sandbox.start()
        client = DingTalkClient(DingTalkConfig(KEY, SECRET, AGENT, base_url=sandbox.base_url), clock=clock)
        opened.append(World(clock, sandbox, client, page))
        return opened[-1]

    yield make
    for w in opened:
        await w.client.close()
        await w.sandbox.stop()


def links(w: World, userids: tuple[str, ...], incident: str = "INC-1") -> dict[str, str]:
    return {u: signed_link(w.page.base_url, u, incident) for u in userids}


# -- the sandbox against the documented examples ------------------------------------------


async def test_sandbox_answers_the_documented_requests_in_the_documented_shapes() -> None:
    token_request, send_request = documented("gettoken.request.json"), documented("asyncsend_v2.request.json")
    sandbox = DingTalkSandbox(token_request["query"]["appkey"], token_request["query"]["appsecret"], 123,
                              users=("123", "456"), clock=ManualClock(START))
    await sandbox.start()
    try:
        async with aiohttp.ClientSession(sandbox.base_url) as http:
            async with http.get(token_request["path"], params=token_request["query"]) as r:
                token = await r.json()
            assert_shape(documented("gettoken.response.json"), token)
            auth = {"access_token": token["access_token"]}
            # As the page's curl sends it: form fields, msg a JSON string.
            async with http.post(send_request["path"], params=auth, data=send_request["form"]) as r:
                sent = await r.json()
            assert_shape(documented("asyncsend_v2.response.json"), sent)
            result_request = documented("getsendresult.request.json")
            form = result_request["form"] | {"task_id": str(sent["task_id"])}  # the page's 456 is no task here
            async with http.post(result_request["path"], params=auth, data=form) as r:
                result = await r.json()
    finally:
        await sandbox.stop()
    assert_shape(documented("getsendresult.response.json"), result)
    fields = documented("getsendresult.fields.json")
    assert set(result) <= set(fields["top"]) and set(result["send_result"]) <= set(fields["send_result"])
    assert result["send_result"]["unread_user_id_list"] == ["123", "456"]


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


async def test_client_reads_the_documented_answers(aiohttp_server: Callable[..., Awaitable[Any]]) -> None:
    vendor = Canned({
        "/gettoken": [documented("gettoken.response.json")] * 2,
        # A refused token first (errcode 88, sub_code 40014): fetched again, once.
        "/topapi/message/corpconversation/asyncsend_v2": [documented("token_refused.response.json"),
                                                           documented("asyncsend_v2.response.json")],
        "/topapi/message/corpconversation/getsendresult": [documented("getsendresult.response.json")],
    })
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", vendor.handle)
    base = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    client = DingTalkClient(DingTalkConfig(KEY, SECRET, AGENT, base_url=base), clock=ManualClock(START))
    try:
        sent = await client.send_card("INC-1:1:manager4220:dingtalk", "【应急】机房断电", "请按口径答复",
                                      {"manager4220": "https://coordinator.example.com/ack?t=x"})
        state = await client.read_state("INC-1:1:manager4220:dingtalk", sent[0].provider_id)
    finally:
        await client.close()
    assert [s.provider_id for s in sent] == ["256271667526"]
    assert state.read == {"manager4220"} and state.status_of("manager4220") is DeliveryStatus.delivered
    assert [p for p, _, _ in vendor.requests].count("/gettoken") == 2
    assert vendor.requests[-1][2] == {"agent_id": AGENT, "task_id": 256271667526}


def test_the_card_has_the_documented_action_card_shape() -> None:
    example = documented("action_card.msg.json")
    mine = action_card("【应急】机房断电", "**请按口径答复**", "确认", "https://coordinator.example.com/ack?t=x")
    assert set(mine) == set(example) and set(mine["action_card"]) == set(example["action_card"])
    assert mine["action_card"]["single_title"] == "确认"


# -- chunking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("links", "calls"),
    [
        ({f"u{n}": "L" for n in range(250)}, [("L", 100), ("L", 100), ("L", 50)]),
        ({"a": "La", "b": "Lb", "c": "La"}, [("La", 2), ("Lb", 1)]),
        ({"a": "La"}, [("La", 1)]),
    ],
)
def test_calls_group_a_shared_link_in_hundreds(links: dict[str, str], calls: list[tuple[str, int]]) -> None:
    assert [(url, len(ids)) for url, ids in plan_calls(links)] == calls


async def test_a_shared_link_to_250_people_is_three_calls(world: MakeWorld) -> None:
    w = await world()
    shared = {u: f"{w.page.base_url}/ack?i=INC-1" for u in STAFF}
    sent = await w.client.send_card("INC-1:1:all:dingtalk", "【应急】机房断电", "请按口径答复", shared)
    assert [len(s.userids) for s in sent] == [100, 100, 50]
    assert w.sandbox.calls["/topapi/message/corpconversation/asyncsend_v2"] == 3
    assert sum(len(t.delivered) for t in w.sandbox.tasks.values()) == 250


# -- tokens -----------------------------------------------------------------------------


async def test_the_token_is_cached_and_fetched_again_before_it_expires(world: MakeWorld) -> None:
    w = await world(token_ttl=7200)
    await w.client.send_card("d1", "t", "m", links(w, ("staff001",)))
    await w.client.send_card("d2", "t", "m", links(w, ("staff002",)))
    assert w.sandbox.token_fetches == 1
    w.clock.advance(timedelta(seconds=7200 - 299))
    await w.client.send_card("d3", "t", "m", links(w, ("staff003",)))
    assert w.sandbox.token_fetches == 2


async def test_a_short_lived_token_is_renewed_before_it_lapses(world: MakeWorld) -> None:
    w = await world(token_ttl=60)  # the client renews a 60 s token after 30 s
    await w.client.send_card("d1", "t", "m", links(w, ("staff001",)))
    w.clock.advance(timedelta(seconds=45))
    await w.client.send_card("d2", "t", "m", links(w, ("staff002",)))
    assert w.sandbox.token_fetches == 2


async def test_a_refused_token_is_fetched_again_once(world: MakeWorld) -> None:
    w = await world()
    await w.client.send_card("d1", "t", "m", links(w, ("staff001",)))
    w.sandbox.expire_tokens()
    await w.client.send_card("d2", "t", "m", links(w, ("staff002",)))
    assert w.sandbox.token_fetches == 2


async def test_a_wrong_secret_is_a_configuration_error(world: MakeWorld) -> None:
    w = await world()
    client = DingTalkClient(DingTalkConfig(KEY, "wrong", AGENT, base_url=w.sandbox.base_url), clock=w.clock)
    with pytest.raises(SendError) as failed:
        await client.send_card("d1", "t", "m", links(w, ("staff001",)))
    await client.close()
    assert (failed.value.code, failed.value.retryable, failed.value.permanent) == ("40089", False, False)


# -- limits, recipients, read state ---------------------------------------------------------


async def test_the_per_second_limit_is_retryable_and_says_what_went_out(world: MakeWorld) -> None:
    w = await world(calls_per_second=2)
    with pytest.raises(PartlySent) as failed:
        await w.client.send_card("d1", "t", "m", links(w, ("staff001", "staff002", "staff003")))
    assert (failed.value.code, failed.value.retryable) == ("90018", True)
    assert [s.userids for s in failed.value.sent] == [("staff001",), ("staff002",)]
    assert failed.value.unsent == ("staff003",)
    w.clock.advance(timedelta(seconds=1))
    await w.client.send_card("d1", "t", "m", links(w, failed.value.unsent))


async def test_read_state_changes_as_people_read(world: MakeWorld) -> None:
    w = await world()
    w.sandbox.read_after("staff001", timedelta(minutes=5))
    sent = await w.client.send_card("d1", "t", "m", links(w, ("staff001", "staff002"), "INC-7"))
    task = {s.userids[0]: s.provider_id for s in sent}
    first = await w.client.read_state("d1", task["staff001"])
    assert (first.read, first.unread) == (frozenset(), frozenset({"staff001"}))
    w.clock.advance(timedelta(minutes=5))
    later = await w.client.read_state("d1", task["staff001"])
    assert (later.read, later.unread) == (frozenset({"staff001"}), frozenset())
    w.sandbox.mark_read("staff002", int(task["staff002"]))
    assert (await w.client.read_state("d1", task["staff002"])).read == {"staff002"}


async def test_unknown_and_repeated_recipients_show_in_the_read_state(world: MakeWorld) -> None:
    w = await world()
    w.sandbox.fail("staff009")
    shared = {u: "https://coordinator.example.com/ack" for u in ("staff001", "nobody", "staff009")}
    (sent,) = await w.client.send_card("d1", "t", "m", shared)
    state = await w.client.read_state("d1", sent.provider_id)
    assert state.status_of("nobody") is DeliveryStatus.failed and state.invalid == {"nobody"}
    assert state.status_of("staff009") is DeliveryStatus.failed
    assert state.status_of("staff001") is DeliveryStatus.delivered
    # The same content to the same person again that day is dropped, not delivered twice.
    (again,) = await w.client.send_card("d1", "t", "m", {"staff001": "https://coordinator.example.com/ack"})
    repeated = await w.client.read_state("d1", again.provider_id)
    assert repeated.status_of("staff001") is DeliveryStatus.undelivered


# -- the button -------------------------------------------------------------------------------


async def test_the_button_opens_the_persons_signed_link(world: MakeWorld) -> None:
    w = await world()
    await w.client.send_card("INC-1:1:x:dingtalk", "【应急】机房断电", "请按口径答复",
                             links(w, ("staff001", "staff002")))
    assert await w.sandbox.click("staff002") == (200, "已确认")
    assert w.page.acked == [("INC-1", "staff002")]
    # A link someone edited to name another person acknowledges nothing.
    forged = links(w, ("staff003",))["staff003"].replace("u=staff003", "u=staff004")
    await w.client.send_card("d2", "t", "m", {"staff003": forged})
    assert (await w.sandbox.click("staff003"))[0] == 403
    assert w.page.acked == [("INC-1", "staff002")]


async def test_a_card_over_the_documented_size_is_refused_before_sending(world: MakeWorld) -> None:
    w = await world()
    with pytest.raises(SendError) as failed:
        await w.client.send_card("d1", "t", "长" * 1000, links(w, ("staff001",)))
    assert (failed.value.code, failed.value.retryable, failed.value.permanent) == ("too-long", False, False)
    assert w.sandbox.calls["/topapi/message/corpconversation/asyncsend_v2"] == 0


# -- the 免登 code (issue 19: the card's link names no person; DingTalk does) ------------------


async def test_the_sandbox_exchanges_a_login_free_code_once_in_the_documented_shape() -> None:
    request = documented("getuserinfo.request.json")
    clock = ManualClock(START)
    sandbox = DingTalkSandbox(KEY, SECRET, AGENT, users=("user456",), clock=clock)
    await sandbox.start()
    try:
        code = sandbox.auth_code("user456")
        async with aiohttp.ClientSession(sandbox.base_url) as http:
            async with http.get("/gettoken", params={"appkey": KEY, "appsecret": SECRET}) as r:
                auth = {"access_token": (await r.json())["access_token"]}
            async with http.post(request["path"], params=auth, json={"code": code}) as r:
                answer = await r.json()
            async with http.post(request["path"], params=auth, json={"code": code}) as r:
                again = await r.json()
            late = sandbox.auth_code("user456")
            clock.advance(timedelta(minutes=6))
            async with http.post(request["path"], params=auth, json={"code": late}) as r:
                expired = await r.json()
    finally:
        await sandbox.stop()
    assert_shape(documented("getuserinfo.response.json"), answer)
    assert answer["result"]["userid"] == "user456"
    assert again["errcode"] == expired["errcode"] == 40078  # once, and for 5 minutes


async def test_client_reads_the_documented_userinfo(aiohttp_server: Callable[..., Awaitable[Any]]) -> None:
    vendor = Canned({"/gettoken": [documented("gettoken.response.json")],
                     "/topapi/v2/user/getuserinfo": [documented("getuserinfo.response.json"),
                                                     {"errcode": 40078, "errmsg": "不存在的临时授权码"}]})
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", vendor.handle)
    base = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    client = DingTalkClient(DingTalkConfig(KEY, SECRET, AGENT, base_url=base), clock=ManualClock(START))
    try:
        assert await client.userid_of(documented("getuserinfo.request.json")["json"]["code"]) == "user456"
        with pytest.raises(SendError) as refused:
            await client.userid_of("made-up")
    finally:
        await client.close()
    assert refused.value.code == "40078" and not refused.value.retryable
    assert vendor.requests[1][2] == {"code": "bab02f63c1e030fbbxxxx"}
