"""WeCom (企业微信) app messages from an internal app: a button_interaction template card
whose 确认 button calls our callback URL back (template_card_event), sent with
cgi-bin/message/send, and turned into a grey 已确认 with message/update_template_card once
pressed. The callback's signature and encryption are in wecom_crypto.py.

WeCom drops, without an error, what one app sends one member past 30 a minute or 1,000 an
hour. The client counts its own sends per member and refuses one that would be dropped
(retryable, saying how long to wait) rather than lose it. It knows only its own sends:
several workers, or other code using the same app, each count apart."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from coordinator.channels.messenger import (
    JsonApi,
    Sent,
    SlidingWindows,
    TokenCache,
    call_with_token,
)
from coordinator.clock import Clock
from coordinator.errors import SendError, TokenRefused

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
MAX_USERIDS = 1000  # touser: "最多支持1000个"
TASK_ID = re.compile(r"^[0-9A-Za-z_\-@]{1,128}$")  # "只能由数字、字母和“_-@”组成，最长128字节"
MAX_KEY_BYTES = 1024

TOKEN_REFUSED = frozenset({40014, 41001, 42001})  # invalid, missing, expired access_token
RATE_LIMITED: dict[int, str] = {-1: "WeCom is busy", 45009: "over an API rate limit", 45033: "too many calls at once"}
# Nobody named can be reached: try the other channel.
UNREACHABLE: dict[int, str] = {
    81013: "every UserID is invalid or outside the app's visible range",
    40003: "invalid UserID",
}
RESPONSE_CODE_SPENT = 60140  # 无效的response_code: used already, or older than 72 hours


@dataclass(frozen=True)
class WeComConfig:
    corp_id: str
    corp_secret: str = field(repr=False)
    agent_id: int
    base_url: str = DEFAULT_BASE_URL
    """The sandbox's base_url in the demo, drills and tests."""
    request_timeout_seconds: float = 10.0
    token_margin_seconds: float = 300.0
    """Fetch a new token this long before the old one expires (WeCom: 7200 s)."""
    per_member: tuple[tuple[int, int], ...] = ((30, 60), (1000, 3600))
    """(messages, seconds) one app may send one member before WeCom drops the rest."""

    def __post_init__(self) -> None:
        if self.request_timeout_seconds <= 0 or self.token_margin_seconds < 0:
            raise ValueError("timeouts and margins must be positive")


def button_card(agent_id: int, userids: Sequence[str], task_id: str, title: str, desc: str, key: str,
                button: str) -> dict[str, Any]:
    """The message/send body: one button that calls back with `key`."""
    return {
        "touser": "|".join(userids),
        "msgtype": "template_card",
        "agentid": agent_id,
        "template_card": {
            "card_type": "button_interaction",
            "main_title": {"title": title, "desc": desc},
            "task_id": task_id,
            "button_list": [{"type": 0, "text": button, "style": 1, "key": key}],
        },
    }


def vendor_error(delivery_id: str, body: dict[str, Any], doing: str) -> SendError:
    """WeCom's errcode as a SendError: busy and rate limits are worth a retry, recipients
    who are all invalid are permanent, anything else is the configuration's to fix."""
    code = int(body.get("errcode", -1))
    what = f"WeCom answered {code} while {doing}: {body.get('errmsg', '')}"
    if code in RATE_LIMITED:
        return SendError(delivery_id, str(code), f"{what}; {RATE_LIMITED[code]}, retry later", retryable=True)
    if code in UNREACHABLE:
        return SendError(delivery_id, str(code), f"{what}; {UNREACHABLE[code]}", retryable=False, permanent=True)
    if code == RESPONSE_CODE_SPENT:
        return SendError(delivery_id, str(code), f"{what}; the response_code is spent or expired", retryable=False)
    return SendError(delivery_id, str(code), f"{what}; a configuration problem (corpid, secret, agentid, "
                     "trusted IP, callback URL), not this recipient", retryable=False)


class WeComClient:
    """Created anywhere; the HTTP session opens on the first call and `close()` ends it.
    message/send has no idempotency key: a send retried after a timeout may arrive twice
    (the press is acknowledged once however many cards the person has)."""

    def __init__(self, config: WeComConfig, *, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._api = JsonApi("WeCom", config.base_url, config.request_timeout_seconds)
        self._tokens = TokenCache(self._fetch_token, clock, timedelta(seconds=config.token_margin_seconds))
        self._sends = SlidingWindows([(count, timedelta(seconds=s)) for count, s in config.per_member])

    async def send_button_card(self, delivery_id: str, userids: Sequence[str], task_id: str, title: str, desc: str,
                               *, key: str, button: str = "确认") -> Sent:
        """One card to `userids` (at most 1,000). `task_id` names the card in the callback
        and must not repeat within the app; `key` comes back as the press's EventKey.
        Raises SendError: retryable if a member's per-minute or per-hour allowance is
        used up (nothing is sent), permanent if nobody named exists."""
        if not userids or len(userids) > MAX_USERIDS:
            raise ValueError(f"a card goes to 1..{MAX_USERIDS} userids")
        if not TASK_ID.match(task_id) or not key or len(key.encode()) > MAX_KEY_BYTES:
            raise ValueError("task_id: 1-128 of [0-9A-Za-z_-@]; key: 1-1024 bytes")
        now = self._clock.now()
        waits = {u: w for u in userids if (w := self._sends.wait(u, now)) > timedelta(0)}
        if waits:
            longest = max(waits.values())
            raise SendError(delivery_id, "member-rate", f"WeCom would drop this for {sorted(waits)} (over "
                            f"{self._config.per_member} per member); retry in {longest.total_seconds():.0f} s",
                            retryable=True)
        # Counted before the call: one that fails after reaching WeCom still counts there,
        # and two sends at once must not both take the last place.
        for userid in userids:
            self._sends.record(userid, now)
        body = button_card(self._config.agent_id, userids, task_id, title, desc, key, button)
        answer = await self._call(delivery_id, "/cgi-bin/message/send", body, "sending the card")
        rejected = [u for part in ("invaliduser", "unlicenseduser") for u in str(answer.get(part) or "").split("|") if u]
        return Sent(provider_id=str(answer.get("msgid", "")), userids=tuple(userids), rejected=tuple(rejected),
                    response_code=answer.get("response_code") or None)

    async def update_card_acknowledged(self, delivery_id: str, response_code: str, userids: Sequence[str],
                                       *, text: str = "已确认") -> tuple[str, ...]:
        """Grey out the button of `userids`' card with `text`, spending `response_code`
        (from the send, or from the press's callback). Returns the userids WeCom did not
        find among the card's recipients. Raises SendError."""
        body = {"userids": list(userids), "agentid": self._config.agent_id, "response_code": response_code,
                "button": {"replace_name": text}}
        answer = await self._call(delivery_id, "/cgi-bin/message/update_template_card", body, "updating the card")
        return tuple(answer.get("invaliduser") or ())

    async def close(self) -> None:
        await self._api.close()

    async def _call(self, delivery_id: str, path: str, body: dict[str, Any], doing: str) -> dict[str, Any]:
        return await call_with_token(self._api, self._tokens, delivery_id, path, body, doing,
                                     token_refused=lambda answer: int(answer.get("errcode", 0)) in TOKEN_REFUSED, error=vendor_error)

    async def _fetch_token(self) -> tuple[str, int]:
        query = {"corpid": self._config.corp_id, "corpsecret": self._config.corp_secret}
        answer = await self._api.request("gettoken", "GET", "/cgi-bin/gettoken", query, None,
                                         "fetching an access_token")
        if int(answer.get("errcode", 0)) != 0 or not answer.get("access_token"):
            raise TokenRefused(answer)
        return str(answer["access_token"]), int(answer.get("expires_in", 7200))
