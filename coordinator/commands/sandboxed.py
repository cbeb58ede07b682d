"""The service wired as in production (create_app over real HTTP, the real twilio and
SMTP clients) against the sandbox on loopback, on a throwaway embedded store: what
`coordinator demo` and `coordinator drill run` stand on. Domain time is the caller's
ManualClock; the network traffic is real."""

from __future__ import annotations

import secrets
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from aiohttp import web

from ..app import create_app
from ..config.catalog import Catalog
from ..clock import ManualClock
from ..sandbox import Delivery, SmtpInbox, TwilioSandbox
from ..config.settings import Settings
from ..web.state import SERVICES, Services

ACCOUNT_SID = "AC" + "de" * 16
AUTH_TOKEN = "sandbox-auth-token"
SENDER = "+15005550006"


@dataclass(frozen=True)
class Sandboxed:
    services: Services
    settings: Settings
    sandbox: TwilioSandbox
    inbox: SmtpInbox
    public: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def sandboxed_service(catalog: Catalog, config_dir: Path, store_path: Path, clock: ManualClock, *,
                            seed: int, delivery: Delivery) -> AsyncIterator[Sandboxed]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    inbox = SmtpInbox(clock=clock)
    await inbox.start()
    sandbox = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, numbers=(SENDER,), inbound_url=f"{public}/hooks/twilio/inbound",
                            clock=clock, seed=seed, delivery=delivery, inbox=inbox)
    runner: web.AppRunner | None = None
    try:
        await sandbox.start()
        host, smtp_port = inbox.address
        settings = Settings(
            port=port, public_url=public, config_dir=config_dir, store_url=f"sqlite:///{store_path}", tick_seconds=0,
            twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from=SENDER,
            twilio_base_url=sandbox.base_url, smtp_host=host, smtp_port=smtp_port, smtp_from="yingji@example.com",
            admin_token=secrets.token_urlsafe(24),  # this run's only credential
        )
        runner = web.AppRunner(create_app(settings, clock=clock, catalog=catalog), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield Sandboxed(runner.app[SERVICES], settings, sandbox, inbox, public)
    finally:
        if runner is not None:
            await runner.cleanup()
        await sandbox.stop()
        await inbox.stop()
