"""The webhooks Twilio POSTs to the account's URLs: their parameters, the signature,
and a log of every attempt for tests and the demo to inspect."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode
from xml.etree import ElementTree

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
    callback), and logs every attempt in `log`. Plain-http URLs (the service on
    loopback) go over kept-alive connections written here (`WebhookPoster`); others
    through aiohttp."""

    def __init__(self, auth_token: str, clock: Clock, timeout: float) -> None:
        self._auth_token = auth_token
        self._clock = clock
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._poster: WebhookPoster | None = None
        self.log: list[CallbackAttempt] = []

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout),
                                              cookie_jar=aiohttp.DummyCookieJar())
        self._poster = WebhookPoster(CALLBACK_CONNECTIONS)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._poster is not None:
            self._poster.close()

    async def post(self, kind: str, url: str, params: dict[str, str], sid: str, event: str) -> bytes:
        """POST a signed webhook; the answer's body (TwiML, for an inbound message) or
        b"" when there was none."""
        if self._session is None or self._poster is None:
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
        content = b""
        # Verbatim, as Twilio sends it: a re-encoded query would not match the signature.
        target = URL(url, encoded=True)
        body = urlencode(params).encode()
        try:
            if target.scheme == "http" and target.host:
                async with asyncio.timeout(self._timeout):
                    answer, content = await self._poster.post(target, body, headers)
            else:
                async with self._session.post(target, data=body, headers=headers) as response:
                    answer = response.status
                    content = await response.read()
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            error = repr(exc)
        self.log.append(CallbackAttempt(kind, url, params, signature, sid, self._clock.now(), answer, error))
        return content if answer is not None and 200 <= answer < 300 else b""


# Callbacks in flight at once, as with aiohttp's default connection limit: the 10k fan-out
# measured 0.51 ms of service CPU per message with 100, 0.64 with 200 and 0.74 with 1,000
# (the same rate, ~10 MB more RSS per 100 connections).
CALLBACK_CONNECTIONS = 100


class WebhookPoster:
    """A minimal HTTP/1.1 client for the sandbox's webhooks: POST with a Content-Length
    body, read the status and the answer's body, keep the connection for the next one.
    aiohttp's client took ~40% of the provider process in a fan-out (three callbacks
    per SMS), most of it per-request machinery a webhook does not need."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def post(self, url: URL, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        host, port = url.raw_host or "", url.port or 80
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (f"POST {url.raw_path_qs} HTTP/1.1\r\nHost: {url.raw_authority}\r\n{head}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
        async with self._slots:
            idle = self._idle.setdefault((host, port), [])
            while True:
                reused = bool(idle)
                reader, writer = idle.pop() if reused else await asyncio.open_connection(host, port)
                try:
                    writer.write(request)
                    status, keep, content = await _read_answer(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    writer.close()
                    if reused:
                        continue  # the server had closed the kept connection: a fresh one
                    raise
                except BaseException:
                    writer.close()
                    raise
                if keep:
                    idle.append((reader, writer))
                else:
                    writer.close()
                return status, content

    def close(self) -> None:
        for connections in self._idle.values():
            for _, writer in connections:
                writer.close()
        self._idle.clear()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """The status of one HTTP/1.1 answer, whether the connection can carry another
    request, and the answer's body."""
    line = await reader.readline()
    if not line:
        raise asyncio.IncompleteReadError(b"", None)
    version, status_text = line.split(b" ", 2)[:2]
    status = int(status_text)
    length: int | None = None
    chunked = False
    keep = version == b"HTTP/1.1"
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep = value.strip().lower() != b"close"
    content = b""
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            content += (await reader.readexactly(size + 2))[:size]
            if size == 0:
                break
    elif length is not None:
        content = await reader.readexactly(length)
    elif status not in (204, 304) and not 100 <= status < 200:
        content = await reader.read()  # the body runs to the end of the connection
        keep = False
    return status, keep, content


def twiml_messages(answer: bytes) -> list[str]:
    """The texts of the <Message> verbs of a TwiML answer (its text, or its <Body>);
    none for an empty or unreadable answer, as Twilio sends nothing then."""
    if not answer.strip():
        return []
    try:
        root = ElementTree.fromstring(answer)
    except ElementTree.ParseError:
        return []
    if root.tag != "Response":
        return []
    texts = []
    for verb in root.findall("Message"):
        body = verb.find("Body")
        text = (body.text if body is not None else verb.text) or ""
        if text.strip():
            texts.append(text.strip())
    return texts
