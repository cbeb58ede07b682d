"""Faults, for real: `coordinator serve` killed with SIGKILL in the middle of a fan-out and
started again; one of two instances on one Redis killed in the middle of a publication;
redis-server killed during intake. Each person in scope gets the script on each of their
channels exactly once (a duplicate only for a send in flight at the kill), nobody is
lost, and the delivery statuses converge. Loopback only: the sandbox and the SMTP inbox
run in this process, the services in their own."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import date, datetime
from zoneinfo import ZoneInfo
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from bench.fanout.config import write_config
from bench.faults.harness import board, converged, wait_for
from coordinator.config.catalog import Catalog, load_catalog
from coordinator.roster import audience
from coordinator.sandbox import Delivery, SmtpInbox, TwilioSandbox
from coordinator.store.redis.keys import RedisKeys

from .redis_server import RedisServer, free_port
from .service_process import ServeProcess

SID, TOKEN, FROM = "AC" + "2" * 32, "fault-sandbox-token", "+15005550006"
PEOPLE = 300
SMS_CONCURRENCY, EMAIL_CONCURRENCY = 10, 5


class Providers:
    def __init__(self, sandbox: TwilioSandbox, inbox: SmtpInbox) -> None:
        self.sandbox, self.inbox = sandbox, inbox

    def env(self, **extra: str) -> dict[str, str]:
        host, port = self.inbox.address
        return {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_FROM": FROM,
                "COORDINATOR_TWILIO_BASE_URL": self.sandbox.base_url, "SMTP_HOST": host, "SMTP_PORT": str(port),
                "SMTP_FROM": "yingji@example.com", "COORDINATOR_TICK_SECONDS": "1",
                "COORDINATOR_RECONCILE_AFTER_SECONDS": "3", "COORDINATOR_OUTBOX_LEASE_SECONDS": "4",
                "COORDINATOR_SMS_CONCURRENCY": str(SMS_CONCURRENCY),
                "COORDINATOR_EMAIL_CONCURRENCY": str(EMAIL_CONCURRENCY), **extra}


@pytest.fixture
async def providers() -> AsyncIterator[Providers]:
    inbox = SmtpInbox()
    await inbox.start()
    sandbox = TwilioSandbox(SID, TOKEN, numbers=(FROM,), seed=7, inbox=inbox,
                            delivery=Delivery(step_delay=0.01, receipt_delay=0.02))
    await sandbox.start()
    try:
        yield Providers(sandbox, inbox)
    finally:
        await sandbox.stop()
        await inbox.stop()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Catalog]:
    target = tmp_path_factory.mktemp("fault-config")
    write_config(target, PEOPLE)
    return target, load_catalog(target)


def store_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/fault.db"
    return f"{request.getfixturevalue('redis_url')}?prefix=fault-{uuid.uuid4().hex[:8]}:"


def service_today() -> date:
    """The day a `serve` on the real clock reaches people on: the samples' do-not-contact
    entries end on given days, so who is in scope depends on it."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


def in_scope_of(catalog: Catalog) -> tuple[int, int]:
    """How many SMS and emails broadband-outage's script takes in ningbo."""
    recipients, _ = audience(catalog.playbooks["broadband-outage"], catalog.contacts, "ningbo", service_today())
    return (sum("sms" in r.channels for r in recipients), sum("email" in r.channels for r in recipients))


async def final(service: ServeProcess, incident_id: str, catalog: Catalog) -> bool:
    """Every script delivery is written and has a final status (SMS delivered or failed,
    email sent)."""
    return converged(await board(service, incident_id), in_scope_of(catalog))


async def check_everyone_once(providers: Providers, catalog: Catalog, service: ServeProcess,
                              incident_id: str) -> Counter[str]:
    """Per (person, channel): the script exactly once, or twice for a send in flight at a
    kill. Returns how many were duplicated per medium."""
    incident = await service.get(f"/api/incidents/{incident_id}")
    scripts = await service.get(f"/api/incidents/{incident_id}/scripts")
    v1 = next(v for v in scripts["scripts"] if v["version"] == 1)
    in_scope, _ = audience(catalog.playbooks[incident["playbook"]], catalog.contacts, incident["region"],
                           service_today())
    duplicates: Counter[str] = Counter()
    for recipient in in_scope:
        person = recipient.person
        if "sms" in recipient.channels:
            got = sum(m.body == v1["sms"] for m in providers.sandbox.received_by(person.phone or ""))
            assert got >= 1, f"{person.id} got no SMS"
            duplicates["sms"] += got - 1
        if "email" in recipient.channels:
            got = sum(mail.subject == v1["email_subject"] for mail in providers.inbox.mailbox(person.email or ""))
            assert got >= 1, f"{person.id} got no email"
            duplicates["email"] += got - 1
    return duplicates


async def trigger(service: ServeProcess) -> str:
    status, body = await service.post("/api/incidents", {"playbook": "broadband-outage", "region": "ningbo",
                                                         "by": "chen-li"})
    assert status == 201, body
    return str(body["id"])


def script_messages(providers: Providers) -> int:
    return sum(1 for m in providers.sandbox.messages if m.direction == "outbound-api" and "统一口径" in m.body)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_serve_killed_mid_fan_out_finishes_after_restart(
    kind: str, providers: Providers, config: tuple[Path, Catalog], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    directory, catalog = config
    # Paced so that the kill lands in the middle of the fan-out.
    env = providers.env(COORDINATOR_SMS_RATE="200", COORDINATOR_EMAIL_RATE="100")
    service = ServeProcess(directory, store_url(kind, request, tmp_path), free_port(), tmp_path / "serve.log", **env)
    providers.sandbox.inbound_url = f"{service.url}/hooks/twilio/inbound"
    await service.start()
    try:
        incident_id = await trigger(service)
        async def some_sent() -> bool:
            return script_messages(providers) >= 60
        await wait_for(some_sent, 30, "60 script SMS sent")
        service.kill9()
        at_kill = script_messages(providers)
        assert at_kill < PEOPLE, "the fan-out was over before the kill"
        await service.start()
        await wait_for(lambda: final(service, incident_id, catalog), 60, "every delivery final after the restart",
                       every=0.5)
        duplicates = await check_everyone_once(providers, catalog, service, incident_id)
        # An SMS in flight is looked for at Twilio before it is sent again; an email in
        # flight (SMTP has no such look-up) may arrive twice.
        assert duplicates["sms"] == 0
        assert duplicates["email"] <= EMAIL_CONCURRENCY
    finally:
        service.stop()


async def test_a_live_instance_finishes_a_killed_ones_publication(
    providers: Providers, config: tuple[Path, Catalog], tmp_path: Path, redis_url: str
) -> None:
    """Reproduction: A was killed while still writing deliveries; B, running on the same
    Redis, never finished the publication, and people got nothing. Under load A sometimes
    finishes and answers between the test seeing its writes and the kill: then nothing is
    left to take over, and the scenario is set up again (at most three times)."""
    directory, catalog = config
    total = sum(in_scope_of(catalog)) + 4  # and the 4 role notices
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for attempt in range(3):
            prefix = f"fault-{uuid.uuid4().hex[:8]}:"
            url = f"{redis_url}?prefix={prefix}"
            env = providers.env()
            a = ServeProcess(directory, url, free_port(), tmp_path / f"a{attempt}.log", **env)
            b = ServeProcess(directory, url, free_port(), tmp_path / f"b{attempt}.log", **env)
            providers.sandbox.inbound_url = f"{b.url}/hooks/twilio/inbound"
            await a.start()
            await b.start()
            keys = RedisKeys(prefix)
            try:
                posting = asyncio.create_task(trigger(a))
                written = 0

                async def mid_publication() -> bool:
                    nonlocal written
                    ids = await client.zrange(keys.incidents(), 0, -1)
                    if not ids:
                        return False
                    written = await client.scard(keys.deliveries(ids[0]))
                    return written > 10  # past the 4 role notices: the script's deliveries are being written

                await wait_for(mid_publication, 20, "A started writing the script's deliveries", every=0.002)
                a.kill9()
                try:
                    await posting
                except (aiohttp.ClientError, AssertionError):
                    pass  # killed before it answered, as wanted
                else:
                    continue  # A answered before the kill: set up again
                [incident_id] = await client.zrange(keys.incidents(), 0, -1)
                assert written < total, "A finished writing before it was killed: nothing to take over"
                await wait_for(lambda: final(b, incident_id, catalog), 60,
                               "B finished the publication and the fan-out", every=0.5)
                duplicates = await check_everyone_once(providers, catalog, b, incident_id)
                assert duplicates["sms"] == 0 and duplicates["email"] <= EMAIL_CONCURRENCY
                timeline = (await b.get(f"/api/incidents/{incident_id}"))["timeline"]
                assert [e["data"]["version"] for e in timeline if e["kind"] == "script_sent"] == [1]
                return
            finally:
                a.stop()
                b.stop()
            providers.sandbox.forget()  # what A sent counts for nothing in the next attempt
            providers.inbox.forget()
        pytest.fail("A answered before it was killed in three attempts: the kill never came mid-publication")
    finally:
        await client.aclose()


async def test_intake_through_a_redis_restart_loses_nothing_answered(tmp_path: Path) -> None:
    """redis-server killed (SIGKILL) and started again while 20 clients post complaints:
    requests during the outage answer 503 (never 500) and are retried; every complaint
    answered 200 is stored; the service recovers without a restart."""
    from aiohttp.test_utils import TestClient, TestServer

    from coordinator.app import create_app
    from coordinator.config.settings import Settings
    from coordinator.store import open_store

    from .conftest import ADMIN_HEADERS, ADMIN_TOKEN, REPO

    server = RedisServer(tmp_path).start()
    settings = Settings(store_url=server.url, tick_seconds=0, outbox_worker=False, subscriber_key="k",
                        admin_token=ADMIN_TOKEN)
    app = create_app(settings, catalog=load_catalog(REPO))
    answered: set[str] = set()
    statuses: Counter[int] = Counter()
    try:
        async with TestClient(TestServer(app), headers=ADMIN_HEADERS) as client:
            async def post(worker: int) -> None:
                for batch in range(25):
                    items = [{"id": f"w{worker}-{batch}-{k}", "received_at": "2026-11-24T10:00:00+08:00",
                              "channel": "hotline", "category": "broadband", "region": "ningbo"} for k in range(10)]
                    for _attempt in range(200):
                        resp = await client.post("/api/complaints", json=items)
                        statuses[resp.status] += 1
                        if resp.status == 200:
                            answered.update(i["id"] for i in items)
                            break
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.01)

            clients = [asyncio.create_task(post(w)) for w in range(20)]
            await asyncio.sleep(0.3)
            server.kill()
            await asyncio.sleep(1.0)
            server.start()
            await asyncio.gather(*clients)
            assert (await client.get("/healthz")).status == 200
        assert statuses[503] > 0, "the outage was not seen"
        assert set(statuses) <= {200, 503}
        assert len(answered) == 20 * 25 * 10
        store = await open_store(server.url, settings.bucket_seconds)
        try:
            assert await store.count_complaints() == len(answered)
        finally:
            await store.close()
    finally:
        server.kill()


async def test_serve_cuts_off_slow_clients(tmp_path: Path) -> None:
    """Reproduction: 200 partial requests (slowloris) stayed open for 60 s+. `serve` now
    closes a connection whose request head is not complete in time, while others are
    served."""
    from .conftest import REPO

    service = ServeProcess(REPO, f"sqlite:///{tmp_path}/s.db", free_port(), tmp_path / "serve.log",
                           COORDINATOR_HEADER_TIMEOUT_SECONDS="1", COORDINATOR_NO_CHANNELS="1")
    await service.start()
    try:
        slow = []
        for _ in range(200):
            reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            slow.append((reader, writer))
        for _ in range(3):  # one header line now and then, never the end of the head
            await asyncio.sleep(0.3)
            for _, writer in slow:
                writer.write(b"X-Slow: 1\r\n")
            assert (await service.get("/healthz"))["store"] == "ok"  # others are still served

        async def closed(reader: asyncio.StreamReader) -> bool:
            return await reader.read() == b""

        async with asyncio.timeout(5):
            assert all(await asyncio.gather(*(closed(r) for r, _ in slow)))
        for _, writer in slow:
            writer.close()
        assert "request head not complete in 1 s" in service.output()
    finally:
        service.stop()
