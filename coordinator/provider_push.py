"""What an SMS provider pushes over its own connection (SMPP's delivery receipts and
replies; Twilio's come by webhook, web/hooks.py), carried out once the service is
built: a receipt moves its delivery's status through the outbox, a reply goes through
the pipeline's reply handling and its answer goes back by SMS, as Twilio's TwiML
answer does."""

from __future__ import annotations

import asyncio
import logging
import secrets

from .channels.base import SmsChannel
from .channels.pushed import Pushed
from .channels.smpp import DeliveryReport, InboundSms
from .clock import Clock
from .errors import SendError
from .models import DeliveryKey
from .outbox import Outbox
from .pipeline import Pipeline
from .store.records import StatusUpdate

log = logging.getLogger(__name__)

SmppPushed = Pushed[DeliveryReport, InboundSms]


async def serve_pushed(pushed: SmppPushed, *, outbox: Outbox, pipeline: Pipeline, sms: SmsChannel, clock: Clock,
                       stop: asyncio.Event) -> None:
    async def receipt(report: DeliveryReport) -> None:
        key = DeliveryKey.parse(report.delivery_id) if report.delivery_id else None
        await outbox.report(StatusUpdate(key, report.status, clock.now(), provider_id=report.provider_id,
                                         error=report.error))

    async def reply(message: InboundSms) -> None:
        replied = await pipeline.reply(message.from_number, message.text)
        if replied.answer is None:
            return
        try:  # an answer is not a delivery: no retry, no fallback (the acknowledgement stands)
            await sms.send_sms(f"answer-{secrets.token_hex(8)}", message.from_number, replied.answer)
        except SendError as exc:
            log.warning("the answer to an SMS reply was not sent: %s", exc.code)

    await pushed.serve(on_receipt=receipt, on_message=reply, stop=stop)
