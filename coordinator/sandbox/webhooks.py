"""The webhooks Twilio POSTs to the account's URLs: their parameters, the signature,
and a log of every attempt for tests and the demo to inspect."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from coordinator.clock import Clock
from coordinator.sandbox.messages import API_VERSION, Message
from coordinator.sandbox.signature import twilio_signature


@dataclass(frozen=True)
class CallbackAttempt:
    """One webhook POST the sandbox made: a status callback or an inbound message."""

    kind: str  # "status" or "inbound"
    url: str
    params: dict[str, str]
    signature: str
    message_sid: str
    at: datetime
    answer: int | None  # the receiver's HTTP status, None when it could not be reached
    error: str | None = None


def status_params(message: Message, status: str, error_code: int | None) -> dict[str, str]:
    """A status callback reporting `status` (which, reordered, may lag the message's own)."""
    params = {
        "AccountSid": message.account_sid,
        "ApiVersion": API_VERSION,
        "From": message.from_ or "",
        "MessageSid": message.sid,
        "MessageStatus": status,
        "SmsSid": message.sid,
        "SmsStatus": status,
        "To": message.to,
    }
    if message.messaging_service_sid:
        params["MessagingServiceSid"] = message.messaging_service_sid
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    return params


def inbound_params(message: Message, opt_out_type: str | None) -> dict[str, str]:
    """The inbound-message webhook for a reply; OptOutType as with Advanced Opt-Out."""
    params = {
        "AccountSid": message.account_sid,
        "ApiVersion": API_VERSION,
        "Body": message.body,
        "From": message.from_ or "",
        "MessageSid": message.sid,
        "NumMedia": "0",
        "NumSegments": str(message.num_segments),
        "SmsMessageSid": message.sid,
        "SmsSid": message.sid,
        "SmsStatus": "received",
        "To": message.to,
    }
    if message.messaging_service_sid:
        params["MessagingServiceSid"] = message.messaging_service_sid
    if opt_out_type:
        params["OptOutType"] = opt_out_type
    return params


class WebhookSender:
    """POSTs signed webhooks, once each (Twilio does not retry a failed status
    callback), and logs every attempt in `log`."""

    def __init__(self, auth_token: str, clock: Clock, timeout: float) -> None:
        self._auth_token = auth_token
        self._clock = clock
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self.log: list[CallbackAttempt] = []

    async def open(self) -> None:
        # Twilio posts callbacks from many machines at once: not aiohttp's default of at
        # most 100 connections, under which a fan-out's callbacks (three per SMS) queued
        # here until they timed out. No cookies: webhooks carry none.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout), connector=aiohttp.TCPConnector(limit=1000),
            cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, kind: str, url: str, params: dict[str, str], sid: str, event: str) -> None:
        if self._session is None:
            raise RuntimeError("start the sandbox before it sends webhooks")
        signature = twilio_signature(self._auth_token, url, params)
        headers = {
            "X-Twilio-Signature": signature,
            # The same token on a duplicate lets the receiver recognise it, as with Twilio's.
            "I-Twilio-Idempotency-Token": f"{sid}-{event}",
            "User-Agent": "TwilioProxy/1.1",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        answer: int | None = None
        error: str | None = None
        try:
            # Verbatim, as Twilio sends it: a re-encoded query would not match the signature.
            # The form encoded here, not by aiohttp's FormData: a fan-out posts thousands.
            body = urlencode(params).encode()
            async with self._session.post(URL(url, encoded=True), data=body, headers=headers) as response:
                answer = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = repr(exc)
        self.log.append(CallbackAttempt(kind, url, params, signature, sid, self._clock.now(), answer, error))
