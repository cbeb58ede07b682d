"""The service under test, wired as in production (create_app, its outbox worker, the
SQLite store, status callbacks checked by signature) against the benchmark's providers.
The only addition: the SMS and email channels are wrapped to stamp the moment each send
returned, i.e. the provider accepted it (Twilio answered 201 / SMTP took the DATA / the
SMSC answered every part's submit_sm).

With `smpp=True` SMS go over SMPP to the provider process's sandbox SMSC: create_app
builds the channel itself (so that its receipts reach the service as in production),
and the wrapper is put in the outbox's place once the service started."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from coordinator.app import LISTEN_BACKLOG, create_app
from coordinator.channels.configured import email_channel, sms_channel
from coordinator.config.catalog import Catalog
from coordinator.channels.base import Accepted
from coordinator.clock import SystemClock
from coordinator.commands.sandboxed import free_port
from coordinator.segments import sms_segments
from coordinator.config.settings import Settings
from coordinator.web.state import SERVICES, Services

from .providers import ACCOUNT_SID, AUTH_TOKEN, SENDER, vm_kb
from .smsc import PASSWORD, SOURCE_ADDR, SYSTEM_ID

ADMIN_TOKEN = "bench-admin-token-0123456789"  # the bench calls the API as the admin


@dataclass
class Accept:
    at: float  # time.perf_counter() when the provider's answer was back
    medium: str  # "sms" | "email"
    delivery_id: str
    segments: int


@dataclass
class Recorder:
    accepted: list[Accept] = field(default_factory=list)
    _segments: dict[str, int] = field(default_factory=dict)

    def sms(self, delivery_id: str, text: str) -> None:
        segments = self._segments.get(text)
        if segments is None:
            segments = self._segments[text] = sms_segments(text).segments
        self.accepted.append(Accept(time.perf_counter(), "sms", delivery_id, segments))

    def email(self, delivery_id: str) -> None:
        self.accepted.append(Accept(time.perf_counter(), "email", delivery_id, 1))

    def of(self, prefix: str, medium: str | None = None) -> list[Accept]:
        return [a for a in self.accepted if a.delivery_id.startswith(prefix) and (medium is None or a.medium == medium)]


class RecordingSms:
    def __init__(self, inner: Any, recorder: Recorder) -> None:
        self.inner, self.recorder = inner, recorder

    async def send_sms(self, delivery_id: str, to: str, text: str, *, since: datetime | None = None) -> Accepted:
        accepted = await self.inner.send_sms(delivery_id, to, text, since=since)
        self.recorder.sms(delivery_id, text)
        return accepted  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.inner.close()


class RecordingEmail:
    def __init__(self, inner: Any, recorder: Recorder) -> None:
        self.inner, self.recorder = inner, recorder

    async def send_email(self, delivery_id: str, to: str, subject: str, text: str, html: str, *,
                         ack_url: str | None) -> Accepted:
        accepted = await self.inner.send_email(delivery_id, to, subject, text, html, ack_url=ack_url)
        self.recorder.email(delivery_id)
        return accepted  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.inner.close()


class Service:
    """One service instance on a fresh SQLite file, its outbox worker running."""

    def __init__(self, catalog: Catalog, store_path: Path, providers: Any, *, sms_rate: float = 0.0,
                 email_rate: float = 0.0, tick_seconds: float = 5.0, sms_concurrency: int | None = None,
                 smpp: bool = False, smpp_window: int | None = None) -> None:
        self.port = free_port()
        self.public = f"http://127.0.0.1:{self.port}"
        host, smtp_port = providers.smtp
        if smpp:
            assert providers.smpp_port, "the provider process runs no SMSC (Subprocess(smsc=True))"
            route: dict[str, Any] = {
                "smpp_host": "127.0.0.1", "smpp_port": providers.smpp_port, "smpp_system_id": SYSTEM_ID,
                "smpp_password": PASSWORD, "smpp_source_addr": SOURCE_ADDR,
                **({"smpp_window": smpp_window} if smpp_window else {})}
        else:
            route = {"twilio_account_sid": ACCOUNT_SID, "twilio_auth_token": AUTH_TOKEN, "twilio_from": SENDER,
                     "twilio_base_url": providers.twilio_base_url}
        self.settings = Settings(
            port=self.port, public_url=self.public, config_dir=catalog.root, store_url=f"sqlite:///{store_path}",
            subscriber_key="bench-subscriber-key", ack_secret="bench-ack-secret", tick_seconds=tick_seconds,
            smtp_host=host, smtp_port=smtp_port, **route,
            smtp_from="yingji@example.com", sms_rate=sms_rate, email_rate=email_rate, admin_token=ADMIN_TOKEN,
            **({"sms_concurrency": sms_concurrency} if sms_concurrency else {}),
        )
        self.smpp = smpp
        self.auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # headers for the bench's API calls
        self.catalog = catalog
        self.recorder = Recorder()
        clock = SystemClock()
        self.sms: RecordingSms | None = None if smpp else RecordingSms(sms_channel(self.settings, clock), self.recorder)
        self.email = RecordingEmail(email_channel(self.settings, clock), self.recorder)
        self.runner = web.AppRunner(
            create_app(self.settings, clock=clock, catalog=catalog, sms=self.sms, email=self.email),  # type: ignore[arg-type]
            access_log=None, shutdown_timeout=2.0)

    async def start(self) -> Services:
        await self.runner.setup()
        if self.smpp:  # the SMPP channel create_app built and bound, stamped as the others
            outbox = self.services.outbox
            outbox.sms = self.sms = RecordingSms(outbox.sms, self.recorder)  # type: ignore[assignment]
        await web.TCPSite(self.runner, "127.0.0.1", self.port, backlog=LISTEN_BACKLOG).start()  # as `serve`
        return self.services

    @property
    def smpp_channel(self) -> Any:
        """The service's own SmppSms (its `stats`: binds, connections lost, throttled)."""
        return self.sms.inner if self.sms is not None else None

    @property
    def services(self) -> Services:
        return self.runner.app[SERVICES]

    async def stop(self, cut_short: bool = False) -> None:
        """`cut_short`: a fan-out is still running and is dropped with the store; the
        request still publishing then fails on the closed store, which is expected
        and not logged."""
        server_log = logging.getLogger("aiohttp.server")
        level = server_log.level
        if cut_short:
            server_log.setLevel(logging.CRITICAL + 1)
        try:
            await self.runner.cleanup()
            if self.sms is not None and not self.smpp:  # create_app closes the channel it built
                await self.sms.close()
            await self.email.close()
            if cut_short:
                await asyncio.sleep(0.5)  # the dropped request's handler ends meanwhile
        finally:
            server_log.setLevel(level)

    async def drained(self, timeout: float = 120.0, every: float = 0.05) -> None:
        """Until nothing is pending in the outbox (the worker sends; this only watches)."""
        deadline = time.perf_counter() + timeout
        while await self.services.store.outbox_size():
            if time.perf_counter() > deadline:
                raise TimeoutError("the outbox did not empty")
            await asyncio.sleep(every)


class RssSampler:
    """This process's VmRSS every `every` seconds while running; `peak_kb` the largest."""

    def __init__(self, every: float = 0.1) -> None:
        self.every = every
        self.peak_kb = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, vm_kb("VmRSS"))
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.peak_kb = max(self.peak_kb, vm_kb("VmRSS"))
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
