"""A WeCom stand-in on loopback: gettoken, message/send and message/update_template_card
of qyapi.weixin.qq.com, and the app's callback, for the demo, drills and tests.

Paths, JSON, errcodes and limits as WeCom documents them (tests/fixtures/vendors/wecom/
README.md names the pages); where the docs are silent, the choice is marked "sandbox:".
Past 30 messages a minute or 1,000 an hour to one member, a message is dropped without an
error, as WeCom says it does. `click` presses a card's button: the sandbox POSTs the
signed, encrypted template_card_event to the callback URL, as WeCom would."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from coordinator.channels.messenger import SlidingWindows
from coordinator.channels.wecom_crypto import WeComCrypto
from coordinator.clock import Clock

SEND = "/cgi-bin/message/send"
UPDATE = "/cgi-bin/message/update_template_card"
TASK_ID = re.compile(r"^[0-9A-Za-z_\-@]{1,128}$")
RESPONSE_CODE_LIFETIME = timedelta(hours=72)
CALLBACK_ATTEMPTS = 3  # "五秒内收不到响应会断掉连接，并且重新发起请求，总共重试三次"


@dataclass
class Card:
    """One accepted message/send, per recipient."""

    msgid: str
    task_id: str | None
    msg: dict[str, Any]
    sent_at: datetime
    delivered: list[str]
    dropped: list[str]
    """Over the per-member limit: accepted, never shown."""
    replaced: dict[str, str] = field(default_factory=dict)
    """userid -> the grey text its button was replaced with (update_template_card)."""

    def keys(self) -> list[str]:
        return [b.get("key", "") for b in self.msg.get("template_card", {}).get("button_list", [])]


@dataclass(frozen=True)
class CallbackAttempt:
    url: str
    """With the signature, timestamp and nonce in its query."""
    sent: str
    """The request body: the encrypted envelope."""
    message: str
    """The plaintext event inside it."""
    status: int | None
    """None: no answer (connection refused, or none in `callback_timeout`)."""
    answer: str


@dataclass
class _ResponseCode:
    card: Card
    scope: tuple[str, ...]
    issued_at: datetime
    spent: bool = False


class WeComSandbox:
    """One corporation (`corp_id`) with one app (`corp_secret`, `agent_id`) whose callback
    is `callback_url`, signed with `callback_token` and sealed with `encoding_aes_key`.
    `users` are its members (userids match without regard to case, as at WeCom). Tokens
    live `token_ttl` seconds; `calls_per_minute` caps calls to one API (over it: 45009)."""

    def __init__(self, corp_id: str, corp_secret: str, agent_id: int, *, users: Iterable[str], clock: Clock,
                 callback_url: str | None, callback_token: str, encoding_aes_key: str, token_ttl: int = 7200,
                 per_member: Sequence[tuple[int, int]] = ((30, 60), (1000, 3600)),
                 calls_per_minute: int | None = None, callback_timeout: float = 5.0, seed: int | None = None) -> None:
        self.corp_id, self.corp_secret, self.agent_id = corp_id, corp_secret, agent_id
        self.users = {u.lower(): u for u in users}
        self.callback_url = callback_url
        self._crypto = WeComCrypto(callback_token, encoding_aes_key, corp_id)
        self._clock = clock
        self._ttl = timedelta(seconds=token_ttl)
        self._per_member = SlidingWindows([(n, timedelta(seconds=s)) for n, s in per_member])
        self._api_rate = SlidingWindows([(calls_per_minute, timedelta(minutes=1))]) if calls_per_minute else None
        self._callback_timeout = callback_timeout
        self._rng = random.Random(seed)
        self._token: tuple[str, datetime] | None = None
        self._codes: dict[str, _ResponseCode] = {}
        self.cards: list[Card] = []
        self.updates: list[dict[str, Any]] = []
        self.callbacks: list[CallbackAttempt] = []
        self.token_fetches = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._base_url: str | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.add_routes([web.get("/cgi-bin/gettoken", self._gettoken), web.post(SEND, self._send),
                        web.post(UPDATE, self._update)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self._base_url = f"http://{bound_host}:{bound_port}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._callback_timeout))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the sandbox is not started")
        return self._base_url

    # -- what tests and drills do -------------------------------------------------------

    def expire_tokens(self) -> None:
        """WeCom may end a token early ("出于运营需要，提前使access_token失效")."""
        self._token = None

    def card(self, userid: str, task_id: str) -> Card:
        for card in reversed(self.cards):
            if card.task_id == task_id and userid.lower() in card.delivered:
                return card
        raise ValueError(f"{userid} has no card {task_id}")

    async def click(self, userid: str, task_id: str, key: str | None = None) -> CallbackAttempt:
        """`userid` presses `key` (default: the first button) on card `task_id`; WeCom
        POSTs the event to the callback URL, retried up to three times without an answer."""
        card = self.card(userid, task_id)
        key = card.keys()[0] if key is None else key
        if key not in card.keys() or userid.lower() in card.replaced:
            raise ValueError(f"{userid}'s card {task_id} has no live button {key!r}")
        if self.callback_url is None or self._session is None:
            raise ValueError("no callback URL, or the sandbox is not started")
        now = self._clock.now()
        code = self._new_code(card, (userid.lower(),), now)
        message = _event(self.corp_id, self.users[userid.lower()], now, key, task_id, code, self.agent_id)
        attempt = CallbackAttempt(self.callback_url, "", message, None, "")
        for _ in range(CALLBACK_ATTEMPTS):
            nonce = str(self._rng.randrange(10**8, 10**9))
            query, body = self._crypto.envelope(message, timestamp=str(int(now.timestamp())), nonce=nonce,
                                                random16=self._rng.randbytes(16), agent_id=str(self.agent_id))
            url = str(URL(self.callback_url).update_query(query))
            try:
                async with self._session.post(url, data=body.encode(), headers={"Content-Type": "text/xml"}) as r:
                    attempt = CallbackAttempt(url, body, message, r.status, await r.text())
            except (TimeoutError, aiohttp.ClientError):
                attempt = CallbackAttempt(url, body, message, None, "")
            self.callbacks.append(attempt)
            if attempt.status is not None:
                break
        return attempt

    async def check_callback_url(self) -> bool:
        """What saving the callback settings does: a GET with an encrypted echostr; the URL
        passes if it answers the plaintext, unquoted, in time."""
        if self.callback_url is None or self._session is None:
            raise ValueError("no callback URL, or the sandbox is not started")
        plain = str(self._rng.getrandbits(63))
        timestamp, nonce = str(int(self._clock.now().timestamp())), str(self._rng.randrange(10**8, 10**9))
        echostr = self._crypto.encrypt(plain, self._rng.randbytes(16))
        query = {"msg_signature": self._crypto.sign(timestamp, nonce, echostr), "timestamp": timestamp,
                 "nonce": nonce, "echostr": echostr}
        try:
            async with self._session.get(str(URL(self.callback_url).update_query(query))) as response:
                return response.status == 200 and await response.text() == plain
        except (TimeoutError, aiohttp.ClientError):
            return False

    # -- the API ------------------------------------------------------------------------

    async def _gettoken(self, request: web.Request) -> web.Response:
        self.token_fetches += 1
        if request.query.get("corpid") != self.corp_id:
            return _error(40013, "invalid corpid")
        if request.query.get("corpsecret") != self.corp_secret:
            return _error(40001, "invalid credential")
        now = self._clock.now()
        # sandbox: the same token until it expires, as a cache in front of WeCom would see it.
        if self._token is None or self._token[1] <= now:
            self._token = (f"{self._rng.getrandbits(256):064x}", now + self._ttl)
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": self._token[0],
                                  "expires_in": int((self._token[1] - now).total_seconds())})

    async def _send(self, request: web.Request) -> web.Response:
        body, refused = await self._admit(request, SEND)
        if refused:
            return refused
        msgtype, card = body.get("msgtype"), body.get("template_card") or {}
        if msgtype not in ("text", "template_card") or (msgtype == "template_card" and card.get("card_type") != "button_interaction"):
            return _error(40008, "sandbox: only text and button_interaction cards are modelled")
        task_id = card.get("task_id") if msgtype == "template_card" else None
        if task_id is not None:
            if self.callback_url is None:
                return _error(43012, "应用需配置回调url")
            if not TASK_ID.match(str(task_id)) or any(c.task_id == task_id for c in self.cards):
                return _error(42014, "sandbox: task_id malformed or used before")
            if not 1 <= len(card.get("button_list") or []) <= 6:
                return _error(40058, "sandbox: button_list needs 1 to 6 buttons")
        named = [u.strip() for u in str(body.get("touser") or "").split("|") if u.strip()]
        parties = [p.strip() for p in str(body.get("toparty") or "").split("|") if p.strip()]
        tags = [t.strip() for t in str(body.get("totag") or "").split("|") if t.strip()]
        if len(named) > 1000 or len(parties) > 100 or len(tags) > 100:
            return _error(40058, "sandbox: over 1000 users, 100 parties or 100 tags")
        invalid = [u.lower() for u in named if u.lower() not in self.users]
        valid = list(dict.fromkeys(u.lower() for u in named if u.lower() in self.users))
        if not valid:  # sandbox: no parties or tags, so those are all invalid
            return _error(81013, "user & party & tag all invalid")
        now = self._clock.now()
        delivered, dropped = [], []
        for userid in valid:
            if self._per_member.wait(userid, now) > timedelta(0):
                dropped.append(userid)  # "超过部分会被丢弃不下发", and no error
            else:
                self._per_member.record(userid, now)
                delivered.append(userid)
        sent = Card(f"{self._rng.getrandbits(128):032x}", task_id, body, now, delivered, dropped)
        self.cards.append(sent)
        answer = {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid), "invalidparty": "|".join(parties),
                  "invalidtag": "|".join(tags), "unlicenseduser": "", "msgid": sent.msgid}
        if task_id is not None:
            answer["response_code"] = self._new_code(sent, tuple(valid), now)
        return web.json_response(answer)

    async def _update(self, request: web.Request) -> web.Response:
        body, refused = await self._admit(request, UPDATE)
        if refused:
            return refused
        code = self._codes.get(str(body.get("response_code", "")))
        now = self._clock.now()
        if code is None or code.spent or now - code.issued_at > RESPONSE_CODE_LIFETIME:
            return _error(60140, "invalid response_code")
        text = (body.get("button") or {}).get("replace_name")
        if not text:
            return _error(40058, "sandbox: only the button.replace_name update is modelled")
        code.spent = True
        asked = list(code.scope) if body.get("atall") == 1 else [str(u).lower() for u in body.get("userids") or []]
        for userid in asked:
            if userid in code.scope and userid in code.card.delivered:
                code.card.replaced[userid] = text
        self.updates.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok", "invaliduser": [u for u in asked if u not in code.scope]})

    async def _admit(self, request: web.Request, path: str) -> tuple[dict[str, Any], web.Response | None]:
        now = self._clock.now()
        token = request.query.get("access_token", "")
        if not token:
            return {}, _error(41001, "access_token missing")
        if self._token is None or token != self._token[0]:
            return {}, _error(40014, "invalid access_token")
        if now >= self._token[1]:
            return {}, _error(42001, "access_token expired")
        if self._api_rate is not None:
            if self._api_rate.wait(path, now) > timedelta(0):
                return {}, _error(45009, "api freq out of limit")
            self._api_rate.record(path, now)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return {}, _error(40058, "sandbox: the body is not a JSON object")
        if str(body.get("agentid")) != str(self.agent_id):
            return {}, _error(40056, "invalid agentid")
        return body, None

    def _new_code(self, card: Card, scope: tuple[str, ...], now: datetime) -> str:
        code = f"{self._rng.getrandbits(192):048x}"
        self._codes[code] = _ResponseCode(card, scope, now)
        return code


def _error(code: int, message: str) -> web.Response:
    # WeCom's errmsg carries a hint and a link after the message, as in its 42001 example.
    return web.json_response({"errcode": code, "errmsg": f"{message}, more info at "
                              f"https://open.work.weixin.qq.com/devtool/query?e={code}"})


def _event(corp_id: str, userid: str, now: datetime, key: str, task_id: str, code: str, agent_id: int) -> str:
    """The template_card_event as WeCom documents it (事件格式, 模板卡片事件推送)."""
    return (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[{userid}]]></FromUserName>"
            f"<CreateTime>{int(now.timestamp())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[{key}]]></EventKey>"
            f"<TaskId><![CDATA[{task_id}]]></TaskId><CardType><![CDATA[button_interaction]]></CardType>"
            f"<ResponseCode><![CDATA[{code}]]></ResponseCode><AgentID>{agent_id}</AgentID></xml>")
