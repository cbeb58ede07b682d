"""SMS through Twilio's Messages API with the official async client.

The Messages API has no idempotency key, so an SMS must never be POSTed again while an
earlier POST may have created it: after a timeout or a connection lost mid-request, the
channel lists the recipient's recent messages and returns the one it finds, and it
remembers the delivery as in doubt so that a later retry looks again before posting.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance

from coordinator.channels.base import Accepted
from coordinator.channels.twilio_http import FormTwilioHttpClient
from coordinator.clock import Clock, SystemClock
from coordinator.errors import SendError
from coordinator.models import DeliveryStatus

T = TypeVar("T")

MAX_VALIDITY_SECONDS = 36000  # Twilio's upper bound for ValidityPeriod

# The recipient's number cannot take this SMS: try the other channel instead.
UNREACHABLE_CODES: dict[int, str] = {
    21211: "invalid 'To' number",
    21408: "no SMS permission for the destination region",
    21610: "the recipient opted out (STOP)",
    21612: "the destination cannot be reached from this sender",
    21614: "'To' is not a mobile number",
}
RATE_LIMITED = 20429
# The client raises the first for Twilio's classic error body, the second for an
# RFC 9457 problem body; both carry `status` and `code`.
TWILIO_ERRORS = (TwilioRestException, TwilioServiceException)
# A gateway in front of Twilio gave up waiting or got no proper answer: the request may
# still have created the message, unlike Twilio's own 5xx, which come before creating it.
UNCLEAR_HTTP_STATUSES = frozenset({502, 504})

# A message found by the lookup counts as this attempt's only if Twilio created it after
# the attempt started, allowing for the clocks of Twilio and this host to disagree. Kept
# short: a reminder with the same text to the same person minutes earlier must not pass.
CLOCK_SKEW = timedelta(seconds=60)
# The lookup reads one page of the recipient's newest messages; a staff member gets a
# handful per incident, so the attempt's message is on it.
LOOKUP_LIMIT = 50
QUIET_HTTP_LOG = logging.getLogger("coordinator.channels.twilio_http")
QUIET_HTTP_LOG.setLevel(logging.WARNING)

_TWILIO_STATUS: dict[str, DeliveryStatus] = {
    "scheduled": DeliveryStatus.queued,
    "accepted": DeliveryStatus.queued,
    "queued": DeliveryStatus.queued,
    "sending": DeliveryStatus.sending,
    "sent": DeliveryStatus.sent,
    "delivered": DeliveryStatus.delivered,
    "read": DeliveryStatus.delivered,
    # Some parts arrived, so the person does not have the whole script.
    "partially_delivered": DeliveryStatus.undelivered,
    "undelivered": DeliveryStatus.undelivered,
    "failed": DeliveryStatus.failed,
    "canceled": DeliveryStatus.failed,
}


def map_twilio_status(status: str) -> DeliveryStatus:
    """The DeliveryStatus for a Twilio message status (from a status callback or a
    fetch). Raises ValueError for a status an outbound message never has
    ("receiving", "received") or one Twilio adds later, so it is noticed, not guessed."""
    try:
        return _TWILIO_STATUS[status.strip().lower()]
    except KeyError:
        raise ValueError(f"not an outbound Twilio message status: {status!r}") from None


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str | None = None
    messaging_service_sid: str | None = None
    status_callback_url: str | None = None
    """The service's public URL + /hooks/twilio/status; None: no callbacks."""
    validity_period_seconds: int = 3600
    """Twilio drops a message still queued after this long: a late script is a stale one."""
    request_timeout_seconds: float = 10.0
    max_connections: int = 100
    """Connections to Twilio kept open at most: the sends that can be in flight at once
    (the outbox's `sms_concurrency`; aiohttp's own default would cap it at 100)."""
    base_url: str | None = None
    """None for api.twilio.com; the sandbox's base_url in the demo, drills and tests."""

    def __post_init__(self) -> None:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("TwilioConfig needs exactly one of from_number and messaging_service_sid")
        if not 1 <= self.validity_period_seconds <= MAX_VALIDITY_SECONDS:
            raise ValueError(f"validity_period_seconds must be 1..{MAX_VALIDITY_SECONDS}")
        if self.request_timeout_seconds <= 0:
            raise ValueError("request_timeout_seconds must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


class TwilioSms:
    """The SmsChannel on Twilio. Create it anywhere; the HTTP client is opened on the
    first send, inside the running event loop, and closed by `close()`."""

    def __init__(self, config: TwilioConfig, *, clock: Clock | None = None) -> None:
        self._config = config
        self._clock = clock or SystemClock()
        self._http: FormTwilioHttpClient | None = None
        self._client: Client | None = None
        # delivery_id -> when its first unclear attempt started.
        self._in_doubt: dict[str, datetime] = {}

    async def send_sms(self, delivery_id: str, to: str, text: str, *, since: datetime | None = None) -> Accepted:
        since = self._in_doubt.get(delivery_id) or since
        if since is None:
            since = self._clock.now()
        else:
            # An earlier attempt (ours that ended unclear, or another worker's) may have
            # created it since.
            found = await self._lookup(delivery_id, to, text, since)
            if found is not None:
                return self._accepted(delivery_id, found)
        try:
            message = await self._bounded(self._twilio().messages.create_async(**self._create_params(delivery_id, to, text)))
        except TWILIO_ERRORS as exc:
            if exc.status in UNCLEAR_HTTP_STATUSES:
                return await self._settle_unclear(delivery_id, to, text, since, exc)
            error = rest_error(delivery_id, exc)
            if not error.retryable:
                self._in_doubt.pop(delivery_id, None)
            raise error from exc
        except aiohttp.ClientConnectorError as exc:
            # No connection, so no request reached Twilio.
            raise SendError(delivery_id, "connection", f"cannot connect to Twilio: {exc}", retryable=True) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            return await self._settle_unclear(delivery_id, to, text, since, exc)
        return self._accepted(delivery_id, message)

    async def status_of(self, delivery_id: str, provider_id: str) -> DeliveryStatus:
        try:
            message = await self._bounded(self._twilio().messages(provider_id).fetch_async())
        except TWILIO_ERRORS as exc:
            raise rest_error(delivery_id, exc, doing="looking up the message's status") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SendError(delivery_id, "timeout", f"no answer to the status look-up ({exc!r})", retryable=True) from exc
        try:
            return map_twilio_status(str(message.status))
        except ValueError as exc:
            raise SendError(delivery_id, "status", str(exc), retryable=False) from exc

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = self._client = None

    async def _settle_unclear(
        self, delivery_id: str, to: str, text: str, since: datetime, cause: Exception
    ) -> Accepted:
        """The POST may have arrived and created the message (a slow answer, a connection
        lost before the answer, a gateway that stopped waiting): find it rather than post
        again, and remember the delivery so that a retry looks again first."""
        self._in_doubt[delivery_id] = since
        found = await self._lookup(delivery_id, to, text, since)
        if found is not None:
            return self._accepted(delivery_id, found)
        if isinstance(cause, TWILIO_ERRORS):
            code, what = twilio_code(cause), f"a gateway answered HTTP {cause.status}"
        elif isinstance(cause, TimeoutError):
            code, what = "timeout", f"no answer from Twilio within {self._config.request_timeout_seconds:g} s"
        else:
            code, what = "connection", f"connection lost before Twilio answered ({cause})"
        raise SendError(
            delivery_id, code, f"{what}, and no message to {to} was found; a retry looks again first", retryable=True
        ) from cause

    def _twilio(self) -> Client:
        if self._client is None:
            # max_retries stays unset: the http client would re-POST a create after a 5xx.
            # Its own logger, quiet below WARNING: the client logs every request and answer
            # at INFO (a dozen lines per SMS), which `serve` would print for each message.
            self._http = FormTwilioHttpClient(pool_connections=False, logger=QUIET_HTTP_LOG)
            self._http.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._config.max_connections))
            client = Client(self._config.account_sid, self._config.auth_token, http_client=self._http)
            # Only this config says where Twilio is: TWILIO_EDGE/TWILIO_REGION from the
            # environment would rewrite the host name.
            client.edge = None
            client.region = None
            if self._config.base_url is not None:
                client.api.base_url = self._config.base_url.rstrip("/")
            self._client = client
        return self._client

    def _create_params(self, delivery_id: str, to: str, text: str) -> dict[str, Any]:
        params: dict[str, Any] = {"to": to, "body": text, "validity_period": self._config.validity_period_seconds}
        if self._config.messaging_service_sid is not None:
            params["messaging_service_sid"] = self._config.messaging_service_sid
        else:
            params["from_"] = self._config.from_number
        if self._config.status_callback_url is not None:
            # The delivery rides in the URL (Twilio signs it with the rest): a callback
            # can arrive before this call returns and the message SID is recorded.
            separator = "&" if "?" in self._config.status_callback_url else "?"
            params["status_callback"] = (
                f"{self._config.status_callback_url}{separator}delivery={urllib.parse.quote(delivery_id, safe=':')}"
            )
        return params

    async def _bounded(self, call: Awaitable[T]) -> T:
        # The client's own timeout is not applied to async requests.
        async with asyncio.timeout(self._config.request_timeout_seconds):
            return await call

    async def _lookup(self, delivery_id: str, to: str, text: str, since: datetime) -> MessageInstance | None:
        try:
            return await self._bounded(self._find_created(to, text, since))
        except TWILIO_ERRORS as exc:
            raise rest_error(delivery_id, exc, doing="checking for a message an unclear attempt created") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            what = "no answer" if isinstance(exc, TimeoutError) else str(exc)
            raise SendError(
                delivery_id,
                "timeout",
                f"could not check whether an unclear attempt created the message ({what}); a retry looks again first",
                retryable=True,
            ) from exc

    async def _find_created(self, to: str, text: str, since: datetime) -> MessageInstance | None:
        """This sender's newest message to `to` with exactly `text`, created since `since`.
        No DateSent filter: a message still queued has no date_sent and would be missed."""
        filters: dict[str, Any] = {"to": to}
        if self._config.from_number is not None:
            filters["from_"] = self._config.from_number
        recent = await self._twilio().messages.list_async(**filters, limit=LOOKUP_LIMIT)
        earliest = since - CLOCK_SKEW
        for message in recent:
            if (
                message.body == text
                and message.direction == "outbound-api"
                and message.messaging_service_sid == self._config.messaging_service_sid
                and message.date_created is not None
                and message.date_created >= earliest
            ):
                return message
        return None

    def _accepted(self, delivery_id: str, message: MessageInstance) -> Accepted:
        self._in_doubt.pop(delivery_id, None)
        return Accepted(provider_id=str(message.sid), status=str(message.status))


def twilio_code(exc: TwilioRestException | TwilioServiceException) -> str:
    # The client puts the HTTP status in `code` when the body has none.
    return str(exc.code if exc.code is not None else exc.status)


def rest_error(
    delivery_id: str, exc: TwilioRestException | TwilioServiceException, *, doing: str = "sending"
) -> SendError:
    """Twilio's error answer as a SendError: rate limits and server errors are worth a
    retry (Twilio answers 5xx before it creates the message), an unreachable number is
    permanent, and any other 4xx is a configuration problem that no retry fixes."""
    code = twilio_code(exc)
    detail = exc.msg if isinstance(exc, TwilioRestException) else exc.detail or exc.title
    what = f"Twilio answered HTTP {exc.status} ({code}) while {doing}: {detail}"
    if exc.status == 429 or exc.code == RATE_LIMITED:
        return SendError(delivery_id, code, f"{what}; rate limited, retry later", retryable=True)
    if exc.status >= 500:
        return SendError(delivery_id, code, f"{what}; retry later", retryable=True)
    if exc.code in UNREACHABLE_CODES:
        return SendError(delivery_id, code, f"{what}; {UNREACHABLE_CODES[exc.code]}", retryable=False, permanent=True)
    return SendError(
        delivery_id,
        code,
        f"{what}; a configuration problem (account, credentials, sender, callback URL), not this recipient",
        retryable=False,
    )
