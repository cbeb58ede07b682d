"""The service wired as in production (create_app over real HTTP, the real twilio or
SMPP and SMTP clients) against the sandbox on loopback, on a throwaway embedded store: what
`coordinator demo` and `coordinator drill run` stand on. Domain time is the caller's
ManualClock; the network traffic is real."""

from __future__ import annotations

import secrets
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

from aiohttp import web

from ..app import create_app
from ..clock import ManualClock
from ..config.catalog import Catalog
from ..config.settings import Settings
from ..sandbox import Delivery, SmtpInbox, TwilioSandbox
from ..sandbox.inprocess import SANDBOX_SENDER as SENDER
from ..sandbox.messengers import MessengerSandboxes, start_messengers
from ..sandbox.inprocess import SANDBOX_SOURCE_ADDR as SOURCE_ADDR
from ..sandbox.phones import SmscPhones
from ..sandbox.smsc import SandboxSmsc
from ..web.state import SERVICES, Services

ACCOUNT_SID = "AC" + "de" * 16
AUTH_TOKEN = "sandbox-auth-token"


@dataclass(frozen=True)
class Sandboxed:
    services: Services
    settings: Settings
    sandbox: TwilioSandbox | SmscPhones
    inbox: SmtpInbox
    public: str
    number: str
    """The number staff reply to: the Twilio sender, or the SMPP source address."""
    messengers: MessengerSandboxes = field(default_factory=lambda: MessengerSandboxes(None, None))
    """DingTalk and WeCom, for the contacts with a userid."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def sandboxed_service(catalog: Catalog, config_dir: Path, store_path: Path, clock: ManualClock, *,
                            seed: int, delivery: Delivery, sms: str = "twilio") -> AsyncIterator[Sandboxed]:
    """The service on `store_path`, its SMS to the Twilio sandbox or (`sms="smpp"`) over
    SMPP to the sandbox SMSC, its email to an SMTP inbox, all on loopback."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    inbox = SmtpInbox(clock=clock)
    await inbox.start()
    phones: TwilioSandbox | SmscPhones
    if sms == "smpp":
        smsc = SandboxSmsc(clock=clock, receipt_delay=delivery.receipt_delay)
        phones, number = SmscPhones(smsc, source_addr=SOURCE_ADDR, clock=clock), SOURCE_ADDR
    else:
        phones, number = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, numbers=(SENDER,),
                                       inbound_url=f"{public}/hooks/twilio/inbound", clock=clock, seed=seed,
                                       delivery=delivery, inbox=inbox), SENDER
    runner: web.AppRunner | None = None
    messengers = MessengerSandboxes(None, None)
    try:
        if isinstance(phones, SmscPhones):
            await phones.smsc.start()
            route = dict(smpp_host="127.0.0.1", smpp_port=phones.smsc.port, smpp_system_id=phones.smsc.system_id,
                         smpp_password="secret", smpp_source_addr=SOURCE_ADDR)
        else:
            await phones.start()
            route = dict(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from=SENDER,
                         twilio_base_url=phones.base_url)
        host, smtp_port = inbox.address
        settings = Settings(
            port=port, public_url=public, config_dir=config_dir, store_url=f"sqlite:///{store_path}", tick_seconds=0,
            smtp_host=host, smtp_port=smtp_port, smtp_from="yingji@example.com",
            admin_token=secrets.token_urlsafe(24),  # this run's only credential
            **route,  # type: ignore[arg-type]
        )
        messengers, settings = await start_messengers(settings, clock, catalog.contacts)
        runner = web.AppRunner(create_app(settings, clock=clock, catalog=catalog), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield Sandboxed(runner.app[SERVICES], settings, phones, inbox, public, number, messengers)
    finally:
        if runner is not None:
            await runner.cleanup()
        await messengers.stop()
        await phones.stop()
        await inbox.stop()
