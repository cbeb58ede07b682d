"""SMS through the operator's SMSC over SMPP 3.4: the SmsChannel of
coordinator/channels/base.py, plus the receipts and replies the SMSC pushes back.

A send is never repeated blindly. SMPP has no idempotency key and no look-up by
recipient, so a submit_sm written and left unanswered is in doubt: the send fails
without a retry (the outbox sends the email instead) and this channel refuses to send
that delivery again. A retryable failure part way through a long text keeps the parts
the SMSC took: the retry sends only the rest, under the same concatenation reference,
so the handset still joins them. docs/smpp.md has the reasoning.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from coordinator.channels.base import Accepted
from coordinator.clock import Clock
from coordinator.errors import (
    SendError,
    SmppBindFailed,
    SmppInDoubt,
    SmppNotSent,
    SmppRefused,
)
from coordinator.models import DeliveryStatus

from .bodies import ESM_UDHI, QuerySm, ShortMessage
from .config import SmppConfig, relative_validity
from .failures import send_error
from .inbound import NPI_ISDN, TON_INTERNATIONAL, InboundSms, Reassembly, e164
from .pdu import Tag
from .receipts import Receipt, advance, message_status, parse_receipt, status_of_state
from .sent import DeliveryReport, SentMessages, part_ids
from .session import EsmeSession, SessionStats
from .text import decode_text, encode_whole, segment_count, split_text

log = logging.getLogger("coordinator.channels.smpp")

OnReceipt = Callable[[DeliveryReport], Awaitable[None]]
OnReply = Callable[[InboundSms], Awaitable[None]]
SESSION_FAILURES = (SmppNotSent, SmppInDoubt, SmppRefused, SmppBindFailed)


@dataclass
class _Progress:
    """The parts of a long text the SMSC took before a retryable failure."""

    text: str
    reference: int
    ids: list[str] = field(default_factory=list)


class SmppSms:
    """`on_receipt` hears every forward move of a sent message's status (from the
    SMSC's receipts); `on_reply` every text someone sent to `source_addr`, whole. If
    either raises, the SMSC is asked to deliver that deliver_sm again later. Create
    anywhere; `start()` (or the first send) binds inside the running loop."""

    def __init__(self, config: SmppConfig, *, on_receipt: OnReceipt, on_reply: OnReply, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._on_receipt = on_receipt
        self._on_reply = on_reply
        self._session = EsmeSession(config, on_deliver=self._delivered)
        self._sent = SentMessages(keep_for=timedelta(seconds=config.track_seconds))
        self._replies = Reassembly(keep_for=timedelta(seconds=config.reassembly_seconds))
        self._progress: dict[str, _Progress] = {}
        self._in_doubt: dict[str, str] = {}
        self._reference = random.randrange(256)
        # Reports being handed on, by provider_id: True once handled, False if that failed.
        self._reporting: dict[str, asyncio.Future[bool]] = {}

    @property
    def stats(self) -> SessionStats:
        return self._session.stats

    async def start(self) -> None:
        self._session.start()

    async def send_sms(self, delivery_id: str, to: str, text: str, *, since: datetime | None = None) -> Accepted:
        # `since` is not used: no SMSC can be asked what it took for a recipient, and an
        # unanswered attempt of this process is remembered in _in_doubt instead.
        if (doubt := self._in_doubt.get(delivery_id)) is not None:
            raise SendError(delivery_id, "in-doubt", f"an earlier attempt is in doubt ({doubt}); not sent again",
                            retryable=False)
        if (earlier := self._sent.sent_for(delivery_id)) is not None:
            return Accepted(provider_id=earlier.provider_id, status="sent")
        base = self._addressed(delivery_id, to)
        try:
            await self._session.ready()  # the bind says whether message_payload may be used
            try:
                progress, messages = self._plan(delivery_id, text, base)
            except ValueError as exc:  # more than 255 parts: no SMS can carry it
                raise SendError(delivery_id, "too-long", str(exc), retryable=False) from exc
            for message in messages[len(progress.ids):]:
                progress.ids.append(await self._session.submit(message))
        except SESSION_FAILURES as exc:
            error = send_error(delivery_id, exc)
            if isinstance(exc, SmppInDoubt):
                self._in_doubt[delivery_id] = str(exc)
            if not error.retryable:
                self._progress.pop(delivery_id, None)
            raise error from exc
        del self._progress[delivery_id]
        provider_id, early = self._sent.add(delivery_id, progress.ids, self._clock.now())
        for report in early:
            await self._on_receipt(report)
        return Accepted(provider_id=provider_id, status="sent")

    async def status_of(self, delivery_id: str, provider_id: str) -> DeliveryStatus:
        """Asks the SMSC (query_sm) about every part; never answers a status behind what
        the receipts said. An SMSC without query_sm: what the receipts said, if this
        process sent the message, else SendError (not retryable)."""
        known = self._sent.get(provider_id)
        try:
            states = [await self._session.query(QuerySm(part, self._config.source_addr, self._config.source_addr_ton,
                                                        self._config.source_addr_npi))
                      for part in part_ids(provider_id)]
        except SESSION_FAILURES as exc:
            if known is not None:
                return known.status
            raise send_error(delivery_id, exc, idempotent=True) from exc
        queried = message_status(status_of_state(state.message_state) for state in states)
        return queried if known is None else advance(known.status, queried)

    async def close(self) -> None:
        await self._session.close()

    def _addressed(self, delivery_id: str, to: str) -> ShortMessage:
        digits = to.removeprefix("+")
        if not (digits.isdigit() and len(digits) <= 20):
            raise SendError(delivery_id, "invalid-number", f"{to!r} is not a phone number", retryable=False,
                            permanent=True)
        c = self._config
        return ShortMessage(
            source_addr=c.source_addr, source_addr_ton=c.source_addr_ton, source_addr_npi=c.source_addr_npi,
            destination_addr=digits, dest_addr_ton=TON_INTERNATIONAL if to.startswith("+") else 0,
            dest_addr_npi=NPI_ISDN, registered_delivery=1,
            validity_period=relative_validity(c.validity_seconds) if c.validity_seconds else "",
        )

    def _plan(self, delivery_id: str, text: str, base: ShortMessage) -> tuple[_Progress, list[ShortMessage]]:
        progress = self._progress.get(delivery_id)
        if progress is None or progress.text != text:
            self._reference = (self._reference + 1) % 256
            progress = self._progress[delivery_id] = _Progress(text, self._reference)
        # Parts already taken pin the split: a resumed send goes on with the same parts.
        if (self._config.long_text == "payload" and self._session.supports_tlvs and not progress.ids
                and segment_count(text) > 1):
            data_coding, data = encode_whole(text)
            return progress, [replace(base, data_coding=data_coding, tlvs={Tag.message_payload: data})]
        split = split_text(text)
        esm_class = ESM_UDHI if split.concatenated else 0
        return progress, [replace(base, short_message=part, data_coding=split.data_coding, esm_class=esm_class)
                          for part in split.with_headers(progress.reference)]

    async def _receipt(self, receipt: Receipt, now: datetime) -> None:
        reports = self._sent.receipt(receipt, now)
        provider = self._sent.provider_of(receipt.message_id)
        if not reports and provider in self._reporting:
            # The same receipt again (the SMSC stopped waiting for our answer) while the
            # report it made is still being handed on: answered as that one ends, so that
            # a hand-over that fails is not answered ESME_ROK through its second copy.
            if not await asyncio.shield(self._reporting[provider]):
                raise TimeoutError(f"the report for {provider} was not handed on; the SMSC will send it again")
        for report in reports + self._sent.expire(now):
            await self._report(report)

    async def _report(self, report: DeliveryReport) -> None:
        done = asyncio.get_running_loop().create_future()
        self._reporting[report.provider_id] = done
        handled = False
        try:
            await self._on_receipt(report)
            handled = True
        except BaseException:  # answered "try again later": the SMSC sends its receipt again
            self._sent.unreported(report)
            raise
        finally:
            done.set_result(handled)
            if self._reporting.get(report.provider_id) is done:
                del self._reporting[report.provider_id]

    async def _delivered(self, message: ShortMessage) -> None:
        now = self._clock.now()
        if message.is_receipt:
            try:
                receipt = parse_receipt(message, decode_text(message.payload, message.data_coding))
            except ValueError as exc:
                log.warning("smpp: unreadable receipt from %s: %s", message.source_addr, exc)
                return
            await self._receipt(receipt, now)
            return
        whole = self._replies.add(message, now)
        for sender, _, parts in self._replies.expire(now):
            log.warning("smpp: a reply from %s stayed incomplete (%d parts came); dropped", sender, parts)
        if whole is None:
            return
        first, cc = whole.first, self._config.country_code
        await self._on_reply(InboundSms(
            from_number=e164(first.source_addr, first.source_addr_ton, cc),
            to_number=e164(first.destination_addr, first.dest_addr_ton, cc),
            text=decode_text(whole.data, first.data_coding),
            received_at=now,
        ))
