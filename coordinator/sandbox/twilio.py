"""A Twilio-compatible Messages API on loopback, for the demo, drills and tests.

The real `twilio` client talks to it unmodified (see `client.py`): same paths, form
fields, JSON, error bodies, Basic auth; status callbacks and inbound webhooks are
signed like Twilio's. State lives on the instance; nothing is read at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from coordinator.clock import Clock, SystemClock
from coordinator.errors import ApiError
from coordinator.sandbox.lifecycle import Apply, Delivery, Notify, Step, draw_fate, plan_delivery
from coordinator.sandbox.limits import Faults, RateLimit, SenderRateLimiter
from coordinator.sandbox.listing import list_page
from coordinator.sandbox.messages import API_VERSION, Message, is_e164, parse_send
from coordinator.sandbox.optout import OptOuts
from coordinator.sandbox.webhooks import CallbackAttempt, WebhookSender, inbound_params, status_params, twiml_messages
from coordinator.segments import sms_segments

if TYPE_CHECKING:
    from coordinator.sandbox.smtp import SmtpInbox

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_API_PREFIX = f"/{API_VERSION}/"
LISTEN_BACKLOG = 1024


class TwilioSandbox:
    """The Messages API of one account, served on `base_url` once started.

    `numbers` are the account's SMS-capable numbers (a `From` outside them is refused
    with 21606); `messaging_services` maps each Messaging Service SID to its sender
    pool (its numbers belong to the account too). `inbound_url` receives replies as
    Twilio's inbound-message webhook. `clock` stamps the messages and times the rate
    limit; `seed` makes every random draw (SIDs, fates, duplicates, reordering, faults)
    replayable; `delivery`, `faults` and `rate_limit` are described on their classes.
    `inbox`, when given, is the SMTP inbox that goes with it (kept for whoever shows
    both; the page is the service's, coordinator/web/sandbox_page.py, behind its login:
    this port serves the Messages API only). Webhooks time out after
    `callback_timeout` seconds.

    `latency` delays every REST answer by that many seconds, as the round trip to
    Twilio over a real network would (0 on loopback). `concurrency_limit` is the
    account's limit on REST requests in flight at once (Twilio's default is 100): a
    request over it is answered 429 with code 20429 and nothing is created. None: no
    limit. `peak_concurrency` tells the most requests seen in flight at once.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        numbers: Iterable[str] = ("+15005550006",),
        messaging_services: Mapping[str, Sequence[str]] | None = None,
        inbound_url: str | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
        delivery: Delivery | None = None,
        faults: Faults | None = None,
        rate_limit: RateLimit | None = None,
        inbox: SmtpInbox | None = None,
        callback_timeout: float = 10.0,
        latency: float = 0.0,
        concurrency_limit: int | None = None,
    ) -> None:
        if not _ACCOUNT_SID.match(account_sid):
            raise ValueError(f"account_sid must look like AC + 32 hex digits, not {account_sid!r}")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._services = {sid: tuple(pool) for sid, pool in (messaging_services or {}).items()}
        for sid, pool in self._services.items():
            if not _SERVICE_SID.match(sid) or not pool:
                raise ValueError(f"messaging service {sid!r} needs an MG SID and at least one number")
        self._service_of = {number: sid for sid, pool in self._services.items() for number in pool}
        self.numbers = frozenset(numbers) | frozenset(self._service_of)
        bad = sorted(n for n in self.numbers if not is_e164(n))
        if bad:
            raise ValueError(f"numbers must be E.164: {bad}")
        if latency < 0:
            raise ValueError("latency must not be negative")
        if concurrency_limit is not None and concurrency_limit < 1:
            raise ValueError("concurrency_limit must be at least 1")
        self.inbound_url = inbound_url
        self.inbox = inbox
        self._latency = latency
        self._concurrency_limit = concurrency_limit
        self._in_flight = 0
        self.peak_concurrency = 0
        self._clock = clock or SystemClock()
        self._delivery = delivery or Delivery()
        self._faults = faults or Faults()
        # How many of each injected fault the create endpoint answered with.
        self.faults_injected: Counter[str] = Counter()
        self._limiter = SenderRateLimiter(rate_limit or RateLimit())
        self._webhooks = WebhookSender(auth_token, self._clock, callback_timeout)
        # One random stream per concern, so turning one knob does not reshuffle the others.
        self._sid_rng, self._fault_rng, self._fate_rng = (
            random.Random(None if seed is None else f"{seed}/{name}") for name in ("sid", "fault", "fate")
        )
        self._messages: dict[str, Message] = {}
        self._optouts = OptOuts()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # -- running -------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on host:port (0 picks a free port); `base_url` tells where."""
        app = web.Application(middlewares=[self._api_middleware])
        account = "/2010-04-01/Accounts/{account_sid}"
        app.add_routes(
            [
                web.post(account + "/Messages.json", self._create),
                web.get(account + "/Messages.json", self._list),
                web.get(account + "/Messages/{sid}.json", self._fetch),
            ]
        )
        await self._webhooks.open()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        # A provider takes a burst of new connections (a fan-out opening its pool) without
        # dropping any; the listen queue's default of 128 would make the rest retry after 1 s.
        site = web.TCPSite(self._runner, host, port, backlog=LISTEN_BACKLOG)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self._base_url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"

    async def stop(self) -> None:
        """Stop serving: pending status steps and callbacks are dropped, slow answers released."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self._webhooks.close()

    async def __aenter__(self) -> TwilioSandbox:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the sandbox is not started")
        return self._base_url

    async def settled(self) -> None:
        """Wait until every message has reached its final status and its callbacks went out."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- what tests and the service's sandbox page look at ----------------------------

    @property
    def callbacks(self) -> list[CallbackAttempt]:
        """Every webhook POSTed so far (status callbacks and inbound), in order."""
        return list(self._webhooks.log)

    @property
    def messages(self) -> list[Message]:
        """Every message, outbound and inbound, oldest first."""
        return list(self._messages.values())

    def forget(self) -> None:
        """Drop every message kept so far (a test or a trainer starting over)."""
        self._messages.clear()

    def received_by(self, phone: str) -> list[Message]:
        """The messages sent to `phone`, oldest first."""
        return [m for m in self._messages.values() if m.direction != "inbound" and m.to == phone]

    def threads(self) -> dict[str, list[Message]]:
        """Each staff phone's conversation: what it received and what it replied, oldest first."""
        threads: dict[str, list[Message]] = {}
        for m in self._messages.values():
            phone = m.from_ if m.direction == "inbound" else m.to
            threads.setdefault(phone or "", []).append(m)
        return threads

    def counts(self) -> Counter[str]:
        """Outbound messages by current status."""
        return Counter(m.status for m in self._messages.values() if m.direction != "inbound")

    def opted_out(self, phone: str, sender: str) -> bool:
        """Whether `phone` has opted out of `sender` (a number or a Messaging Service SID)."""
        return self._optouts.blocked(self._sender_key(sender), phone)

    # -- inbound ---------------------------------------------------------------------

    async def reply(self, from_number: str, to_number: str, body: str) -> Message:
        """A staff member's phone texts one of the account's numbers: record the message,
        apply STOP/START, and POST the signed inbound webhook (awaited) if configured."""
        if to_number not in self.numbers:
            raise ValueError(f"{to_number} is not a number of this account")
        if not is_e164(from_number):
            raise ValueError(f"{from_number} is not an E.164 number")
        opt_out = self._optouts.apply(self._sender_key(to_number), from_number, body)
        now = self._clock.now()
        message = Message(
            sid=self._new_sid(),
            account_sid=self.account_sid,
            direction="inbound",
            to=to_number,
            from_=from_number,
            messaging_service_sid=self._service_of.get(to_number),
            body=body,
            status="received",
            num_segments=sms_segments(body).segments,
            date_created=now,
            date_updated=now,
            date_sent=now,
        )
        self._messages[message.sid] = message
        if self.inbound_url is not None:
            params = inbound_params(message, opt_out)
            answer = await self._webhooks.post("inbound", self.inbound_url, params, message.sid, "received")
            for text in twiml_messages(answer):
                self._send_reply(message, text)
        return message

    def _send_reply(self, inbound: Message, text: str) -> None:
        """What Twilio does with a TwiML <Message> in the answer to an inbound webhook: a
        message back to the sender from the number it wrote to (direction outbound-reply,
        no status callbacks unless the verb asks for them; it does not here)."""
        now = self._clock.now()
        message = Message(sid=self._new_sid(), account_sid=self.account_sid, direction="outbound-reply",
                          to=inbound.from_ or "", from_=inbound.to, messaging_service_sid=inbound.messaging_service_sid,
                          body=text, status="queued", num_segments=sms_segments(text).segments, date_created=now,
                          date_updated=now)
        self._messages[message.sid] = message
        plan = plan_delivery(via_service=False, error_code=None, delivery=self._delivery, rng=self._fate_rng)
        task = asyncio.create_task(self._deliver(message, plan))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the REST API ----------------------------------------------------------------

    @web.middleware
    async def _api_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(_API_PREFIX):
            return await handler(request)
        self._in_flight += 1
        self.peak_concurrency = max(self.peak_concurrency, self._in_flight)
        try:
            response = await self._answer(request, handler)
            if self._latency:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._latency)
            return response
        finally:
            self._in_flight -= 1

    async def _answer(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            self._authorize(request)
            if self._concurrency_limit is not None and self._in_flight > self._concurrency_limit:
                raise ApiError(429, 20429, "Too Many Requests")
            return await handler(request)
        except ApiError as exc:
            headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if exc.status == 401 else None
            return web.json_response(exc.body(), status=exc.status, headers=headers)
        except web.HTTPNotFound:
            error = ApiError(404, 20404, f"The requested resource {request.path} was not found")
            return web.json_response(error.body(), status=404)

    def _authorize(self, request: web.Request) -> None:
        try:
            auth = aiohttp.BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            auth = None
        path_account = request.match_info.get("account_sid", self.account_sid)
        if (
            auth is None
            or (auth.login, auth.password) != (self.account_sid, self.auth_token)
            or path_account != self.account_sid
        ):
            raise ApiError(401, 20003, "Authenticate")

    async def _create(self, request: web.Request) -> web.Response:
        form = await request.post()
        # The first value of a repeated field wins; uploads are not form fields here.
        fields = {name: value for name, value in reversed(list(form.items())) if isinstance(value, str)}
        fault = self._faults.draw(self._fault_rng)
        if fault is not None:
            self.faults_injected[fault] += 1
        if fault == "server_error":
            raise ApiError(500, 20500, "Internal Server Error")
        if fault == "too_many_requests":
            raise ApiError(429, 20429, "Too Many Requests")
        send = parse_send(fields, numbers=self.numbers, services=self._services)
        sender = send.messaging_service_sid or send.from_ or ""
        if self._optouts.blocked(self._sender_key(sender), send.to):
            raise ApiError(400, 21610, "Attempt to send to unsubscribed recipient")
        now = self._clock.now()
        segments = sms_segments(send.body).segments
        if not self._limiter.admit(sender, segments, now):
            raise ApiError(429, 20429, "Too Many Requests")
        message = Message(
            sid=self._new_sid(),
            account_sid=self.account_sid,
            direction="outbound-api",
            to=send.to,
            from_=send.from_,
            messaging_service_sid=send.messaging_service_sid,
            body=send.body,
            status="accepted" if send.messaging_service_sid else "queued",
            num_segments=segments if send.from_ else 0,
            date_created=now,
            date_updated=now,
            status_callback=send.status_callback,
        )
        self._messages[message.sid] = message
        plan = plan_delivery(
            via_service=send.messaging_service_sid is not None,
            error_code=draw_fate(send.to, self._delivery, self._fate_rng),
            delivery=self._delivery,
            rng=self._fate_rng,
        )
        task = asyncio.create_task(self._deliver(message, plan))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        resource = message.resource()  # as created, even if the steps move on meanwhile
        if fault == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._faults.slow_seconds)
        return web.json_response(resource, status=201)

    async def _fetch(self, request: web.Request) -> web.Response:
        message = self._messages.get(request.match_info["sid"])
        if message is None:
            raise web.HTTPNotFound()
        return web.json_response(message.resource())

    async def _list(self, request: web.Request) -> web.Response:
        newest_first = list(reversed(self._messages.values()))
        return web.json_response(list_page(newest_first, request.query, self.account_sid))

    # -- delivery and webhooks -----------------------------------------------------------

    def _new_sid(self) -> str:
        return f"SM{self._sid_rng.getrandbits(128):032x}"

    def _sender_key(self, sender: str) -> str:
        """Opt-outs are scoped to a Messaging Service when the number belongs to one."""
        return self._service_of.get(sender, sender)

    async def _deliver(self, message: Message, plan: list[Apply | Notify]) -> None:
        for action in plan:
            if isinstance(action, Apply):
                await asyncio.sleep(action.delay)
                self._apply(message, action.step)
            elif message.status_callback is not None:
                params = status_params(message, action.step.status, action.step.error_code)
                await self._webhooks.post("status", message.status_callback, params, message.sid, action.step.status)

    def _apply(self, message: Message, step: Step) -> None:
        now = self._clock.now()
        if message.from_ is None and message.messaging_service_sid is not None:
            # The service picks a sender when it queues the message; the same recipient
            # keeps the same sender (Twilio's sticky sender).
            pool = self._services[message.messaging_service_sid]
            message.from_ = pool[zlib.crc32(message.to.encode()) % len(pool)]
            message.num_segments = sms_segments(message.body).segments
        message.status = step.status
        message.error_code = step.error_code
        message.date_updated = now
        if step.status == "sent":
            message.date_sent = now
