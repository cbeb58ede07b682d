"""The messenger side of the service, built in one place: the DingTalk and WeCom
clients, the sender of their cards (sending.py), the read-state poller
(reads.py) and the button presses (acks.py). docs/messengers.md
tells the whole story."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

from ..channels.dingtalk import DingTalkClient
from ..channels.wecom import WeComClient
from ..channels.configured import dingtalk_client, wecom_client, wecom_crypto
from ..clock import Clock
from ..config.catalog import Catalog
from ..config.settings import Settings
from ..messages import Messages
from .acks import Acknowledge, MessengerAcks
from .sending import MessengerOutbox
from .reads import ReadPoller
from ..outbox import Outbox
from ..store import Store


@dataclass(frozen=True)
class Messengers:
    dingtalk: DingTalkClient | None
    wecom: WeComClient | None
    outbox: MessengerOutbox
    reads: ReadPoller
    acks: MessengerAcks

    @property
    def media(self) -> frozenset[str]:
        """The messenger media a client is configured for."""
        return frozenset(m for m, c in (("dingtalk", self.dingtalk), ("wecom", self.wecom)) if c is not None)

    async def run(self, stop: asyncio.Event) -> None:
        """Send and poll until `stop` is set."""
        await asyncio.gather(self.outbox.run(stop), self.reads.run(stop))

    async def close(self) -> None:
        await self.acks.settle()
        for client in (self.dingtalk, self.wecom):
            if client is not None:
                await client.close()


def build_messengers(settings: Settings, *, store: Store, catalog: Callable[[], Catalog], clock: Clock,
                     messages: Messages, outbox: Outbox, acknowledge: Acknowledge, ack_secret: str,
                     worker: str) -> Messengers:
    """The clients the settings ask for, and the parts over the outbox's recording (one
    group commit for every medium) and the messages' content and fallback."""
    dingtalk, wecom = dingtalk_client(settings, clock), wecom_client(settings, clock)
    sender = MessengerOutbox(store, clock=clock, content=messages.content, dingtalk=dingtalk, wecom=wecom,
                             card_link=messages.card_link, record=outbox.record, on_permanent=messages.fallback,
                             worker=worker, wake=outbox.wake)
    reads = ReadPoller(store=store, clock=clock, dingtalk=dingtalk, report=outbox.report)
    acks = MessengerAcks(store=store, catalog=catalog, clock=clock, acknowledge=acknowledge, ack_secret=ack_secret,
                         dingtalk=dingtalk, wecom=wecom, wecom_crypto=wecom_crypto(settings))
    return Messengers(dingtalk, wecom, sender, reads, acks)
