"""SMPP for tests: channels with quick timings and an opener that closes what it opened,
and the whole service sending over SMPP to the sandbox SMSC (and email to a sandbox inbox)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Awaitable, Callable, Protocol

from aiohttp.test_utils import TestClient, TestServer

from coordinator.app import create_app
from coordinator.channels.smpp import DeliveryReport, SmppConfig, SmppSms
from coordinator.clock import ManualClock
from coordinator.commands.sandboxed import free_port
from coordinator.config.catalog import Catalog
from coordinator.config.settings import Settings
from coordinator.sandbox.smsc import SandboxSmsc
from coordinator.sandbox.smtp import SmtpInbox
from coordinator.store import Store

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

OURS = "1065712345"  # the service's SMS source address

# Short keep-alives, timeouts and back-offs, so a test sees several of each in well under a second.
FAST: dict[str, Any] = dict(
    host="127.0.0.1", system_id="sandbox", password="secret", source_addr=OURS,
    enquire_link_seconds=0.05, response_timeout_seconds=0.5, connect_timeout_seconds=1.0,
    reconnect_min_seconds=0.02, reconnect_max_seconds=0.1, throttle_min_seconds=0.02, throttle_max_seconds=0.1,
)


class Listener(Protocol):
    """Where a channel hands receipts and replies (a test's recorder)."""

    def receipt(self, report: DeliveryReport) -> Awaitable[None]: ...
    def reply(self, message: Any) -> Awaitable[None]: ...


class Channels:
    """Opens SMPP channels to a sandbox SMSC with FAST settings; `close` closes them all."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.opened: list[SmppSms] = []

    def open(self, smsc: SandboxSmsc, listener: Listener, **overrides: Any) -> SmppSms:
        channel = SmppSms(SmppConfig(**{**FAST, "port": smsc.port, **overrides}), on_receipt=listener.receipt,
                          on_reply=listener.reply, clock=self.clock)
        self.opened.append(channel)
        return channel

    async def close(self) -> None:
        for channel in self.opened:
            await channel.close()


OpenChannel = Callable[..., SmppSms]


@asynccontextmanager
async def smpp_service(store: Store, catalog: Catalog, clock: ManualClock,
                       **smsc_settings: Any) -> AsyncIterator[tuple[TestClient, SandboxSmsc, SmtpInbox]]:
    """The service on `store` with an admin's client, sending SMS over SMPP to a sandbox
    SMSC made with `smsc_settings` and email to a sandbox inbox; all stopped after."""
    smsc = await SandboxSmsc(clock=clock, **smsc_settings).start()
    inbox = SmtpInbox(clock=clock)
    await inbox.start()
    host, smtp_port = inbox.address
    port = free_port()
    settings = Settings(public_url=f"http://127.0.0.1:{port}", subscriber_key="k", ack_secret="a", tick_seconds=0,
                        outbox_worker=False, admin_token=ADMIN_TOKEN, smpp_host="127.0.0.1", smpp_port=smsc.port,
                        smpp_system_id="sandbox", smpp_password="secret", smpp_source_addr=OURS,
                        smtp_host=host, smtp_port=smtp_port)
    client = TestClient(TestServer(create_app(settings, clock=clock, store=store, catalog=catalog), port=port),
                        headers=ADMIN_HEADERS)
    await client.start_server()
    try:
        yield client, smsc, inbox
    finally:
        await client.close()
        await inbox.stop()
        await smsc.stop()
