"""What the two messenger channels (DingTalk work notifications in `dingtalk.py`, WeCom
app messages in `wecom.py`) share: what a send returns, what DingTalk's read state says,
a pressed button, the access-token cache both vendors need, a sliding-window count of
sends, and the JSON-over-HTTP call. What a vendor's errcode means stays in its module."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

from coordinator.clock import Clock
from coordinator.errors import SendError, TokenRefused
from coordinator.models import DeliveryStatus


@dataclass(frozen=True)
class Sent:
    """One call the vendor accepted."""

    provider_id: str
    """DingTalk's task_id (as text), or WeCom's msgid."""
    userids: tuple[str, ...]
    """Who the call named."""
    rejected: tuple[str, ...] = ()
    """Named but refused at once (WeCom's invaliduser and unlicenseduser, lower-cased by
    WeCom): permanent for them. DingTalk says so only later, in ReadState.invalid."""
    response_code: str | None = None
    """WeCom: spent by one update_template_card call, within 72 hours."""


@dataclass(frozen=True)
class ReadState:
    """DingTalk's getsendresult for one task: where each recipient stands now."""

    read: frozenset[str]
    unread: frozenset[str]
    failed: frozenset[str]
    invalid: frozenset[str]
    """Not a userid of the organisation (or not visible to the app): permanent."""
    forbidden: frozenset[str]
    """Dropped by DingTalk's flow control: the same content to the same person twice in a
    day (143106), or over 500 messages a day from one app (143105)."""

    def status_of(self, userid: str) -> DeliveryStatus:
        """Read or not, the message reached the person's DingTalk; someone in no list is
        still inside DingTalk's asynchronous send."""
        if userid in self.read or userid in self.unread:
            return DeliveryStatus.delivered
        if userid in self.invalid or userid in self.failed:
            return DeliveryStatus.failed
        if userid in self.forbidden:
            return DeliveryStatus.undelivered
        return DeliveryStatus.sent


@dataclass(frozen=True)
class CardClick:
    """A person pressed a card's button (WeCom's template_card_event)."""

    userid: str
    task_id: str
    key: str
    response_code: str | None
    """Spent by one update_template_card call, within 72 hours."""


class TokenCache:
    """One app's access token: fetched on first use, again `margin` before it expires,
    and again when the vendor calls it invalid. Callers at the same moment share a fetch
    (both vendors throttle gettoken)."""

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, int]]], clock: Clock, margin: timedelta) -> None:
        """`fetch` returns the token and its expires_in in seconds."""
        self._fetch = fetch
        self._clock = clock
        self._margin = margin
        self._token: str | None = None
        self._renew_at = datetime.min.replace(tzinfo=timezone.utc)
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        async with self._lock:
            if self._token is None or self._clock.now() >= self._renew_at:
                token, expires_in = await self._fetch()
                # A lifetime shorter than the margin (a test's) is renewed at half of it.
                lifetime = timedelta(seconds=expires_in)
                early = self._margin if lifetime > 2 * self._margin else lifetime / 2
                self._token, self._renew_at = token, self._clock.now() + lifetime - early
            return self._token

    def invalidate(self, token: str) -> None:
        """The vendor refused `token`; another caller may have replaced it already."""
        if self._token == token:
            self._token = None


class SlidingWindows:
    """Events per key in sliding windows, e.g. sends per person: at most 30 a minute and
    1,000 an hour. Time is passed in."""

    def __init__(self, limits: Sequence[tuple[int, timedelta]]) -> None:
        if not limits or any(count < 1 or window <= timedelta(0) for count, window in limits):
            raise ValueError("each limit needs a positive count and window")
        self._limits = tuple(limits)
        self._longest = max(window for _, window in limits)
        self._seen: dict[str, deque[datetime]] = {}

    def wait(self, key: str, now: datetime) -> timedelta:
        """How long until one more event for `key` fits every window (zero: now)."""
        seen = self._prune(key, now)
        wait = timedelta(0)
        for count, window in self._limits:
            inside = [t for t in seen if t > now - window]
            if len(inside) >= count:
                wait = max(wait, inside[len(inside) - count] + window - now)
        return wait

    def record(self, key: str, now: datetime) -> None:
        self._prune(key, now).append(now)

    def _prune(self, key: str, now: datetime) -> deque[datetime]:
        seen = self._seen.setdefault(key, deque())
        while seen and seen[0] <= now - self._longest:
            seen.popleft()
        return seen


class JsonApi:
    """JSON over HTTPS to one vendor (`vendor` names it in errors). Both answer HTTP 200
    with an errcode; what that code means is the channel's business. The session opens
    on the first request, inside the running loop, and `close()` ends it."""

    def __init__(self, vendor: str, base_url: str, timeout_seconds: float) -> None:
        self._vendor = vendor
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def request(self, delivery_id: str, method: str, path: str, query: Mapping[str, str],
                      body: Mapping[str, Any] | None, doing: str) -> dict[str, Any]:
        """The answer's JSON object. Raises SendError, retryable, for no answer in time,
        a lost connection, a 5xx or an answer that is not a JSON object: neither vendor
        takes an idempotency key, so a send retried after a timeout may arrive twice."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.request(method, self._base_url + path, params=query, json=body) as response:
                    if response.status >= 500:
                        raise SendError(delivery_id, f"http-{response.status}", f"{self._vendor} answered HTTP "
                                        f"{response.status} while {doing}; retry later", retryable=True)
                    answer = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise SendError(delivery_id, "connection", f"no usable answer from {self._vendor} while {doing} "
                            f"({exc!r}); retry later", retryable=True) from exc
        if not isinstance(answer, dict):
            raise SendError(delivery_id, "answer", f"{self._vendor} answered {answer!r} while {doing}", retryable=True)
        return answer

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None


async def call_with_token(api: JsonApi, tokens: TokenCache, delivery_id: str, path: str, body: dict[str, Any],
                          doing: str, *, token_refused: Callable[[dict[str, Any]], bool],
                          error: Callable[[str, dict[str, Any], str], SendError]) -> dict[str, Any]:
    """POST `body` to `path` with the app's token, as both vendors take it (the token in
    the query, errcode 0 for success). A refused token is fetched again and the call
    repeated once; any other errcode raises `error(delivery_id, answer, doing)`."""
    for attempt in (1, 2):
        try:
            token = await tokens.get()
        except TokenRefused as exc:
            raise error(delivery_id, exc.body, "fetching an access_token") from None
        except SendError as exc:  # raised for the fetch, which serves any delivery
            raise SendError(delivery_id, exc.code, exc.message, retryable=exc.retryable) from exc
        answer = await api.request(delivery_id, "POST", path, {"access_token": token}, body, doing)
        if str(answer.get("errcode", 0)) == "0":
            return answer
        if token_refused(answer) and attempt == 1:
            tokens.invalidate(token)
            continue
        raise error(delivery_id, answer, doing)
    raise AssertionError("unreachable")
