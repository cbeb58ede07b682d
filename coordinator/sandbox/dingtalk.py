"""A DingTalk stand-in on loopback: gettoken and the work-notification endpoints
(asyncsend_v2, getsendresult) of oapi.dingtalk.com, for the demo, drills and tests.

Paths, JSON, errcodes and limits as DingTalk documents them (tests/fixtures/vendors/
dingtalk/README.md names the pages); where the docs are silent, the choice is marked
"sandbox:". A person reads a message when a test says so (`mark_read`) or a set time
after it reached them (`read_after`); `click` opens a card's button link as the person's
DingTalk would. State lives on the instance; time comes from the clock."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from aiohttp import web

from coordinator.channels.messenger import SlidingWindows
from coordinator.clock import Clock

SEND = "/topapi/message/corpconversation/asyncsend_v2"
RESULT = "/topapi/message/corpconversation/getsendresult"
USERINFO = "/topapi/v2/user/getuserinfo"
AUTH_CODE_LIFETIME = timedelta(minutes=5)  # "有效期5分钟，且只能使用一次"
MAX_USERIDS = 100
MAX_MSG_BYTES = 2048
PER_USER_DAILY = 500  # 143105 past it
CHINA = timezone(timedelta(hours=8))  # "one a day" days are Beijing days
# What topapi answered for a refused token when observed; an expired one likewise (sandbox).
TOKEN_REFUSED = {"errcode": 88, "sub_code": "40014", "sub_msg": "不合法的access_token",
                 "errmsg": "ding talk error[subcode=40014,submsg=不合法的access_token]"}


@dataclass
class Task:
    """One accepted asyncsend_v2 call and what became of each recipient."""

    task_id: int
    msg: dict[str, Any]
    sent_at: datetime
    delivered: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    forbidden: dict[str, str] = field(default_factory=dict)  # userid -> 143105 / 143106
    read: set[str] = field(default_factory=set)


class DingTalkSandbox:
    """One organisation with one internal app (`app_key`, `app_secret`, `agent_id`) and
    the userids in `users`. Tokens live `token_ttl` seconds (7200 at DingTalk); more than
    `calls_per_second` calls to one API in a second are refused with 90018 (None: no
    limit); `departments` maps a dept_id to its userids."""

    def __init__(self, app_key: str, app_secret: str, agent_id: int, *, users: Iterable[str], clock: Clock,
                 token_ttl: int = 7200, calls_per_second: int | None = 20,
                 departments: Mapping[int, Iterable[str]] | None = None, seed: int | None = None) -> None:
        self.app_key, self.app_secret, self.agent_id = app_key, app_secret, agent_id
        self.users = frozenset(users)
        self.departments = {d: tuple(ids) for d, ids in (departments or {}).items()}
        self._clock = clock
        self._ttl = timedelta(seconds=token_ttl)
        self._qps = SlidingWindows([(calls_per_second, timedelta(seconds=1))]) if calls_per_second else None
        self._rng = random.Random(seed)
        self._token: tuple[str, datetime] | None = None
        self._read_after: dict[str, timedelta] = {}
        self._failing: set[str] = set()
        self._daily: Counter[tuple[str, str]] = Counter()  # (userid, day) -> messages
        self._contents: set[tuple[str, str, str]] = set()  # (userid, day, content hash)
        self.tasks: dict[int, Task] = {}
        self.calls: Counter[str] = Counter()
        self.token_fetches = 0
        self.clicks: list[tuple[str, int, str, int]] = []  # userid, task_id, url, HTTP status
        self._auth_codes: dict[str, tuple[str, datetime]] = {}  # code -> userid, issued
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._base_url: str | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.add_routes([web.get("/gettoken", self._gettoken), web.post(SEND, self._send), web.post(RESULT, self._result),
                        web.post(USERINFO, self._userinfo)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self._base_url = f"http://{bound_host}:{bound_port}"
        self._session = aiohttp.ClientSession()

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

    def read_after(self, userid: str, delay: timedelta) -> None:
        """From now on `userid` reads each message `delay` after it reached them."""
        self._read_after[userid] = delay

    def mark_read(self, userid: str, task_id: int) -> None:
        self.tasks[task_id].read.add(userid)

    def fail(self, userid: str) -> None:
        """DingTalk fails to deliver to `userid` from now on (failed_user_id_list)."""
        self._failing.add(userid)

    def expire_tokens(self) -> None:
        """DingTalk may end a token early; the next call with it is refused."""
        self._token = None

    def cards_for(self, userid: str) -> list[tuple[int, dict[str, Any]]]:
        """(task_id, msg) of what reached `userid`, oldest first."""
        return [(t.task_id, t.msg) for t in self.tasks.values() if userid in t.delivered]

    async def click(self, userid: str, task_id: int | None = None) -> tuple[int, str]:
        """`userid` presses the button of their card from `task_id` (default: the newest):
        a GET of its link, as DingTalk's in-app browser would. Returns status and body."""
        cards = [(t, m) for t, m in self.cards_for(userid) if task_id in (None, t)]
        if not cards:
            raise ValueError(f"{userid} has no card from task {task_id}")
        task, msg = cards[-1]
        card = msg.get("action_card") or {}
        url = card.get("single_url") or (card.get("btn_json_list") or [{}])[0].get("action_url")
        if not url or self._session is None:
            raise ValueError(f"task {task}'s card has no button link, or the sandbox is not started")
        async with self._session.get(url, allow_redirects=False) as response:
            body = await response.text()
        status = response.status
        if status == 200 and "requestAuthCode" in body:
            # The page asks DingTalk's JSAPI for a 免登 code and posts it back, as its
            # script does inside DingTalk's browser.
            async with self._session.post(url, data={"code": self.auth_code(userid)}, allow_redirects=False) as posted:
                status, body = posted.status, await posted.text()
        self.clicks.append((userid, task, url, status))
        return status, body

    def auth_code(self, userid: str) -> str:
        """A 免登 auth code as DingTalk's JSAPI (requestAuthCode) gives the page open in
        `userid`'s DingTalk: valid 5 minutes, once."""
        code = f"{self._rng.getrandbits(128):032x}"
        self._auth_codes[code] = (userid, self._clock.now())
        return code

    # -- the API ------------------------------------------------------------------------

    async def _gettoken(self, request: web.Request) -> web.Response:
        self.token_fetches += 1
        key, secret = request.query.get("appkey", ""), request.query.get("appsecret", "")
        if not key:
            return _json({"errcode": 90002, "errmsg": "appkey参数为空"})
        if not secret:
            return _json({"errcode": 90003, "errmsg": "appsecret参数为空"})
        if (key, secret) != (self.app_key, self.app_secret):
            return _json({"errcode": 40089, "errmsg": "不合法的appkey或appsecret"})
        now = self._clock.now()
        # "Obtaining it again within its validity returns the same token and renews it."
        token = self._token[0] if self._token and self._token[1] > now else f"{self._rng.getrandbits(128):032x}"
        self._token = (token, now + self._ttl)
        return _json({"errcode": 0, "access_token": token, "errmsg": "ok",
                      "expires_in": int(self._ttl.total_seconds())})

    async def _send(self, request: web.Request) -> web.Response:
        body, refused = await self._admit(request, SEND)
        if refused:
            return refused
        msg = body.get("msg")
        if isinstance(msg, str):
            try:
                msg = json.loads(msg)
            except ValueError:
                msg = None
        ids = body.get("userid_list") or ""
        depts = body.get("dept_id_list") or ""
        if not isinstance(msg, dict) or "msgtype" not in msg or not isinstance(ids, str) or not isinstance(depts, str):
            return _json({"errcode": 400002, "errmsg": "sandbox: msg must be a JSON object with msgtype; "
                          "userid_list and dept_id_list comma-separated strings"})
        userids = [u for u in ids.split(",") if u]
        dept_ids = [d for d in depts.split(",") if d]
        if len(userids) > MAX_USERIDS or len(dept_ids) > 20 or len(json.dumps(msg, ensure_ascii=False).encode()) > MAX_MSG_BYTES:
            return _json({"errcode": 400002, "errmsg": "sandbox: over the documented limits (100 userids, "
                          "20 departments, 2048-byte msg)"})
        for dept in dept_ids:
            userids += [u for u in self.departments.get(int(dept) if dept.isdigit() else -1, ()) if u not in userids]
        if not userids and body.get("to_all_user") not in (True, "true"):
            return _json({"errcode": 400002, "errmsg": "sandbox: no recipient (1430000 in the send result)"})
        task = Task(task_id=self._rng.randrange(10**11, 10**12), msg=msg, sent_at=self._clock.now())
        self._deliver(task, userids or sorted(self.users))
        self.tasks[task.task_id] = task
        return _json({"errcode": 0, "task_id": task.task_id, "request_id": self._request_id()})

    def _deliver(self, task: Task, userids: list[str]) -> None:
        day = task.sent_at.astimezone(CHINA).date().isoformat()
        content = hashlib.sha256(json.dumps(task.msg, sort_keys=True).encode()).hexdigest()
        for userid in userids:
            if userid not in self.users:
                task.invalid.append(userid)
            elif userid in self._failing:
                task.failed.append(userid)
            elif (userid, day, content) in self._contents:
                task.forbidden[userid] = "143106"
            elif self._daily[(userid, day)] >= PER_USER_DAILY:
                task.forbidden[userid] = "143105"
            else:
                self._contents.add((userid, day, content))
                self._daily[(userid, day)] += 1
                task.delivered.append(userid)

    async def _result(self, request: web.Request) -> web.Response:
        body, refused = await self._admit(request, RESULT)
        if refused:
            return refused
        task = self.tasks.get(int(body.get("task_id") or 0)) if str(body.get("task_id", "")).isdigit() else None
        if task is None:
            return _json({"errcode": 400002, "errmsg": "agentId不合法或taskId不合法"})
        now = self._clock.now()
        read = [u for u in task.delivered if u in task.read
                or (u in self._read_after and now >= task.sent_at + self._read_after[u])]
        return _json({"errcode": 0, "errmsg": "ok", "request_id": self._request_id(), "send_result": {
            "invalid_user_id_list": task.invalid,
            "forbidden_user_id_list": list(task.forbidden),
            "failed_user_id_list": task.failed,
            "read_user_id_list": read,
            "unread_user_id_list": [u for u in task.delivered if u not in read],
            "invalid_dept_id_list": [],
            "forbidden_list": [{"code": code, "count": 1 if code == "143106" else PER_USER_DAILY, "userid": u}
                               for u, code in task.forbidden.items()],
        }})

    async def _userinfo(self, request: web.Request) -> web.Response:
        body, refused = await self._admit(request, USERINFO, agent=False)
        if refused:
            return refused
        found = self._auth_codes.pop(str(body.get("code") or ""), None)
        if found is None or self._clock.now() - found[1] > AUTH_CODE_LIFETIME:
            return _json({"errcode": 40078, "errmsg": "不存在的临时授权码", "request_id": self._request_id()})
        userid = found[0]
        return _json({"errcode": 0, "errmsg": "ok", "request_id": self._request_id(), "result": {
            "userid": userid, "device_id": "sandbox", "sys": False, "sys_level": 0,
            "associated_unionid": "", "unionid": f"union-{userid}", "name": userid}})

    async def _admit(self, request: web.Request, path: str,
                     agent: bool = True) -> tuple[dict[str, Any], web.Response | None]:
        """The request's body if its token, rate and agent_id pass; else the refusal."""
        self.calls[path] += 1
        now = self._clock.now()
        token = request.query.get("access_token", "")
        if not self._token or token != self._token[0] or now >= self._token[1]:
            return {}, _json(TOKEN_REFUSED | {"request_id": self._request_id()})
        if self._qps is not None:
            if self._qps.wait(path, now) > timedelta(0):
                return {}, _json({"errcode": 90018, "errmsg": "sandbox: over 20 calls per second to this API"})
            self._qps.record(path, now)
        if request.content_type == "application/json":
            body = await request.json()
        else:
            body = dict(await request.post())
        if not isinstance(body, dict) or (agent and str(body.get("agent_id")) != str(self.agent_id)):
            return {}, _json({"errcode": 400002, "errmsg": "agentId不合法或taskId不合法"})
        return body, None

    def _request_id(self) -> str:
        return "".join(self._rng.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(12))


def _json(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, dumps=lambda o: json.dumps(o, ensure_ascii=False))
