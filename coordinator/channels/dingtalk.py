"""DingTalk work notifications (工作通知) from an internal app: an action_card whose 确认
button opens our signed acknowledgement link, sent with
topapi/message/corpconversation/asyncsend_v2, and its read state from getsendresult.

An action_card button only opens a URL; DingTalk calls nothing back. So the
acknowledgement is the link: the caller passes each person's signed, expiring link (the
email's scheme, coordinator/acklinks.py, signs and checks it), and the click reaches our
own page. People with the same link share a call, of at most 100 userids (the documented
limit); per-person links mean a call per person.

The send is asynchronous: errcode 0 says DingTalk took the task, not that anyone got it.
Unknown userids, flow control (the same content to one person twice in a day is dropped)
and failures show only in read_state()."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from coordinator.channels.messenger import (
    JsonApi,
    ReadState,
    Sent,
    TokenCache,
    call_with_token,
)
from coordinator.clock import Clock
from coordinator.errors import PartlySent, SendError, TokenRefused

DEFAULT_BASE_URL = "https://oapi.dingtalk.com"
MAX_USERIDS = 100  # userid_list: "最大用户列表长度100"
MAX_MSG_BYTES = 2048  # msg: "最长不超过2048个字节"
MAX_URL_CHARS = 500  # action_card.single_url
SEND = "/topapi/message/corpconversation/asyncsend_v2"
RESULT = "/topapi/message/corpconversation/getsendresult"
USERINFO = "/topapi/v2/user/getuserinfo"

# As text: topapi wraps these as errcode 88 with the code in sub_code.
TOKEN_REFUSED = frozenset({"40014", "41001", "42001"})
RATE_LIMITED: dict[str, str] = {
    "-1": "DingTalk is busy",
    "90018": "over the app's per-API calls per second (20)",
    "90002": "over DingTalk's calls per second for this API, across all organisations",
    "143103": "over the app's recipients per minute",
    "143104": "over the organisation's recipients per minute",
}


@dataclass(frozen=True)
class DingTalkConfig:
    app_key: str
    app_secret: str = field(repr=False)
    agent_id: int
    base_url: str = DEFAULT_BASE_URL
    """The sandbox's base_url in the demo, drills and tests."""
    request_timeout_seconds: float = 10.0
    token_margin_seconds: float = 300.0
    """Fetch a new token this long before the old one expires (DingTalk: 7200 s; its docs
    suggest renewing at about 7000)."""

    def __post_init__(self) -> None:
        if self.request_timeout_seconds <= 0 or self.token_margin_seconds < 0:
            raise ValueError("timeouts and margins must be positive")


def action_card(title: str, markdown: str, button: str, url: str) -> dict[str, Any]:
    """The `msg` of one card with one button opening `url`."""
    return {"msgtype": "action_card",
            "action_card": {"title": title, "markdown": markdown, "single_title": button, "single_url": url}}


def plan_calls(links: Mapping[str, str], limit: int = MAX_USERIDS) -> list[tuple[str, tuple[str, ...]]]:
    """(link, userids) for each call: people sharing a link together, `limit` at most,
    in the order they were given."""
    groups: dict[str, list[str]] = {}
    for userid, url in links.items():
        groups.setdefault(url, []).append(userid)
    return [(url, tuple(ids[i:i + limit])) for url, ids in groups.items() for i in range(0, len(ids), limit)]


def error_code(body: Mapping[str, Any]) -> str:
    """The code that says what went wrong: topapi's sub_code under its errcode 88."""
    code = str(body.get("errcode", "-1"))
    return str(body.get("sub_code") or code) if code == "88" else code


def vendor_error(delivery_id: str, body: Mapping[str, Any], doing: str) -> SendError:
    """DingTalk's error as a SendError: flow control and busy are worth a retry; anything
    else (app key, secret, agent_id, IP allow-list, quota, content) is the configuration's
    to fix. No send-time error is about one recipient: those come in read_state()."""
    code = error_code(body)
    what = f"DingTalk answered {code} while {doing}: {body.get('sub_msg') or body.get('errmsg', '')}"
    if code in RATE_LIMITED:
        return SendError(delivery_id, code, f"{what}; {RATE_LIMITED[code]}, retry later", retryable=True)
    return SendError(delivery_id, code, f"{what}; a configuration problem, not this recipient", retryable=False)


def read_state(body: Mapping[str, Any]) -> ReadState:
    """getsendresult's send_result; a list it leaves out is empty."""
    result = body.get("send_result") or {}

    def ids(name: str) -> frozenset[str]:
        return frozenset(str(u) for u in result.get(name) or ())

    forbidden = ids("forbidden_user_id_list") | {str(f["userid"]) for f in result.get("forbidden_list") or ()
                                                 if isinstance(f, Mapping) and f.get("userid")}
    return ReadState(read=ids("read_user_id_list"), unread=ids("unread_user_id_list"),
                     failed=ids("failed_user_id_list"), invalid=ids("invalid_user_id_list"), forbidden=forbidden)


class DingTalkClient:
    """Created anywhere; the HTTP session opens on the first call and `close()` ends it.
    A send that timed out may have gone out; sent again with the same content, DingTalk
    drops it for those people (143106) rather than deliver it twice."""

    def __init__(self, config: DingTalkConfig, *, clock: Clock) -> None:
        self._config = config
        self._api = JsonApi("DingTalk", config.base_url, config.request_timeout_seconds)
        self._tokens = TokenCache(self._fetch_token, clock, timedelta(seconds=config.token_margin_seconds))

    async def send_card(self, delivery_id: str, title: str, markdown: str, links: Mapping[str, str],
                        *, button: str = "确认") -> list[Sent]:
        """The card to each userid in `links`, its button opening that person's link.
        Returns one Sent per call, provider_id being DingTalk's task_id. Raises SendError,
        or PartlySent when a later call fails after earlier ones went out."""
        if not links:
            raise ValueError("a card needs at least one recipient")
        sent: list[Sent] = []
        calls = plan_calls(links)
        for url, userids in calls:
            msg = action_card(title, markdown, button, url)
            if len(url) > MAX_URL_CHARS or len(json.dumps(msg, ensure_ascii=False).encode()) > MAX_MSG_BYTES:
                raise SendError(delivery_id, "too-long", f"the card is over DingTalk's {MAX_MSG_BYTES} bytes or its "
                                f"link over {MAX_URL_CHARS} characters", retryable=False)
            body = {"agent_id": self._config.agent_id, "userid_list": ",".join(userids), "msg": msg}
            try:
                answer = await self._call(delivery_id, SEND, body, "sending the card")
            except SendError as exc:
                if not sent:
                    raise
                raise PartlySent(exc, sent, [u for _, ids in calls[len(sent):] for u in ids]) from exc
            sent.append(Sent(provider_id=str(answer["task_id"]), userids=userids))
        return sent

    async def read_state(self, delivery_id: str, task_id: str) -> ReadState:
        """Where the task's recipients stand now (DingTalk keeps it 24 hours). Raises SendError."""
        body = {"agent_id": self._config.agent_id, "task_id": int(task_id)}
        return read_state(await self._call(delivery_id, RESULT, body, "reading the send result"))

    async def userid_of(self, code: str) -> str:
        """The userid whose DingTalk made `code`, a 免登 auth code (JSAPI
        requestAuthCode: valid 5 minutes, once), via topapi/v2/user/getuserinfo.
        Raises SendError (40078: no such code, or spent)."""
        answer = await self._call("userinfo", USERINFO, {"code": code}, "exchanging an auth code")
        userid = (answer.get("result") or {}).get("userid")
        if not userid:
            raise SendError("userinfo", "no-userid", "DingTalk named no userid for the code", retryable=False)
        return str(userid)

    async def close(self) -> None:
        await self._api.close()

    async def _call(self, delivery_id: str, path: str, body: dict[str, Any], doing: str) -> dict[str, Any]:
        return await call_with_token(self._api, self._tokens, delivery_id, path, body, doing,
                                     token_refused=lambda answer: error_code(answer) in TOKEN_REFUSED, error=vendor_error)

    async def _fetch_token(self) -> tuple[str, int]:
        query = {"appkey": self._config.app_key, "appsecret": self._config.app_secret}
        answer = await self._api.request("gettoken", "GET", "/gettoken", query, None, "fetching an access_token")
        if str(answer.get("errcode", 0)) != "0" or not answer.get("access_token"):
            raise TokenRefused(answer)
        return str(answer["access_token"]), int(answer.get("expires_in", 7200))
