"""What every fault scenario stands on: the providers in a process of their own
(bench/fanout/providers.py), a config with 10,000 synthetic frontline staff in ningbo,
`coordinator serve` processes (tests/service_process.py) on SQLite or on a Redis that
persists as the README asks (tests/redis_server.py), and the waits and counts the
scenarios share."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Awaitable, Callable

from bench.fanout.config import write_config
from bench.fanout.providers import ACCOUNT_SID, AUTH_TOKEN, SENDER, Subprocess
from coordinator.config.catalog import Catalog, load_catalog
from coordinator.roster import audience
from tests.redis_server import RedisServer, free_port
from tests.service_process import ServeProcess

FINAL_SMS = {"delivered", "undelivered", "failed"}
FINAL_EMAIL = {"sent", "failed"}


@dataclass
class Fleet:
    """The providers, the config, and a durable Redis, for one run of the benchmark."""

    tmp: Path
    people: int
    providers: Subprocess = field(init=False)
    catalog: Catalog = field(init=False)
    config: Path = field(init=False)
    redis: RedisServer | None = None
    services: list[ServeProcess] = field(default_factory=list)

    async def start(self, api_latency: float = 0.0) -> None:
        self.config = self.tmp / "config"
        if not self.config.exists():
            write_config(self.config, self.people)
        self.catalog = load_catalog(self.config)
        self.providers = Subprocess(api_latency=api_latency)
        await self.providers.start()

    async def stop(self) -> None:
        for service in self.services:
            service.stop()
        self.services.clear()
        await self.providers.stop()

    def durable_redis(self) -> RedisServer:
        if self.redis is None:
            workdir = self.tmp / "redis"
            workdir.mkdir(exist_ok=True)
            self.redis = RedisServer(workdir).start()
        return self.redis

    def store_url(self, kind: str, name: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{self.tmp}/{name}.db"
        return f"{self.durable_redis().url}?prefix={name}:"

    def service(self, store_url: str, name: str, **env: str) -> ServeProcess:
        host, port = self.providers.smtp
        settings = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_FROM": SENDER,
                    "COORDINATOR_TWILIO_BASE_URL": self.providers.twilio_base_url, "SMTP_HOST": host,
                    "SMTP_PORT": str(port), "SMTP_FROM": "yingji@example.com", **env}
        service = ServeProcess(self.config, store_url, free_port(), self.tmp / f"{name}.log", **settings)
        self.services.append(service)
        return service

    def expected(self) -> tuple[int, int]:
        """The script's SMS and emails for broadband-outage in ningbo."""
        recipients, _ = audience(self.catalog.playbooks["broadband-outage"], self.catalog.contacts, "ningbo",
                                 date.today())
        return sum("sms" in r.channels for r in recipients), sum("email" in r.channels for r in recipients)

    def in_scope(self) -> list[tuple[str, str | None, str | None]]:
        recipients, _ = audience(self.catalog.playbooks["broadband-outage"], self.catalog.contacts, "ningbo",
                                 date.today())
        return [(r.person.id, r.person.phone if "sms" in r.channels else None,
                 r.person.email if "email" in r.channels else None) for r in recipients]

    async def reached(self, code: str, incident_id: str) -> tuple[int, int]:
        """How many phones and mailboxes have the incident's version 1, from the providers'
        own records (asking the service would cost it a read of every delivery)."""
        tally = await self.providers.tally(f"事件码{code}", f"{incident_id}.1.")
        scope = self.in_scope()
        phones = {phone for _, phone, _ in scope if phone}
        mailboxes = {email for _, _, email in scope if email}
        # (role notices carry the code too, to role holders outside the audience)
        return len(phones & tally["sms"].keys()), len(mailboxes & tally["email"].keys())

    async def total(self) -> int:
        """Messages and emails the providers hold, all incidents together."""
        counts = await self.providers.count()
        return int(counts["messages"]) + int(counts["emails"])

    async def everyone_reached(self, service: ServeProcess, incident_id: str, timeout: float, *, since: int,
                               every: float = 0.2) -> float:
        """Seconds until every phone and mailbox in scope has the script: the providers'
        cheap count watched until it grew by the script's size over `since` (`total()`
        before the trigger), then their per-address records until each one has it."""
        code = (await service.get(f"/api/incidents/{incident_id}"))["code"]
        expected = self.expected()
        started = time.perf_counter()

        async def grown() -> bool:
            return await self.total() - since >= sum(expected)

        async def done() -> bool:
            return await self.reached(code, incident_id) == expected

        await wait_for(grown, timeout, "the script's size sent", every=every)
        try:
            await wait_for(done, timeout, "every phone and mailbox in scope reached", every=0.5)
        except TimeoutError:
            raise TimeoutError(f"reached {await self.reached(code, incident_id)} of {expected}") from None
        return time.perf_counter() - started

    async def losses_and_duplicates(self, service: ServeProcess, incident_id: str) -> dict[str, int]:
        """Per (person, channel) in scope: how many got the incident's version 1 not at all,
        how many more than once (SMS known by the code it carries, emails by the
        Message-ID, which holds the delivery id)."""
        incident = await service.get(f"/api/incidents/{incident_id}")
        # (the Message-ID spells the delivery id's ':' as '.')
        tally = await self.providers.tally(f"事件码{incident['code']}", f"{incident_id}.1.")
        out = {"sms_lost": 0, "sms_duplicates": 0, "email_lost": 0, "email_duplicates": 0}
        for _, phone, email in self.in_scope():
            for medium, address in (("sms", phone), ("email", email)):
                if address is None:
                    continue
                got = tally[medium].get(address, 0)
                out[f"{medium}_lost"] += got == 0
                out[f"{medium}_duplicates"] += max(0, got - 1)
        return out


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.1) -> float:
    """Seconds until `check` holds; raises TimeoutError naming `what`."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(every)
    except TimeoutError:
        raise TimeoutError(f"not within {timeout:g} s: {what}") from None
    return time.perf_counter() - started


async def board(service: ServeProcess, incident_id: str) -> dict[str, dict[str, int]]:
    """The script's deliveries by channel and status (version 1)."""
    answer = await service.get(f"/api/incidents/{incident_id}/deliveries")
    return dict(answer["counts"].get("1", {}))


def all_sent(counts: dict[str, dict[str, int]], expected: tuple[int, int]) -> bool:
    """Every script delivery written and handed to its provider (or failed for good)."""
    sms, email = counts.get("sms", {}), counts.get("email", {})
    written = (sum(sms.values()), sum(email.values())) == expected
    return written and not ({"queued", "sending"} & (set(sms) | set(email)))


def converged(counts: dict[str, dict[str, int]], expected: tuple[int, int]) -> bool:
    sms, email = counts.get("sms", {}), counts.get("email", {})
    return all_sent(counts, expected) and set(sms) <= FINAL_SMS and set(email) <= FINAL_EMAIL


async def trigger(service: ServeProcess, *, drill: bool = False) -> str:
    status, body = await service.post("/api/incidents", {"playbook": "broadband-outage", "region": "ningbo",
                                                         "by": "chen-li", "drill": drill})
    if status != 201:
        raise RuntimeError(f"trigger answered {status}: {body}")
    return str(body["id"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))] if ordered else 0.0


def fanout_env(**extra: Any) -> dict[str, str]:
    """Settings every scenario's service runs with, as strings for the environment."""
    base = {"COORDINATOR_RECONCILE_AFTER_SECONDS": "20"}
    return {**base, **{k: str(v) for k, v in extra.items()}}
