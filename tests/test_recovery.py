"""After an outage: delivery statuses whose callbacks were refused are looked up at the
provider; a Redis that would lose acknowledged complaints is refused, and with the
documented settings a SIGKILL of redis-server loses none; a burst of clients waits for a
Redis connection instead of failing."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from coordinator.app import create_app
from coordinator.channels.configured import sms_channel
from coordinator.config.catalog import Catalog
from coordinator.errors import StoreError
from coordinator.models import DeliveryStatus
from coordinator.sandbox import Delivery as Fates
from coordinator.config.settings import Settings
from coordinator.store import Store
from coordinator.store.redis import RedisStore

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN, BUCKET_SECONDS, REPO
from .redis_server import RedisServer, free_port
from .test_fanout import make_env

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


# --- statuses that never came ---------------------------------------------------------


async def test_statuses_whose_callbacks_were_refused_are_looked_up(store: Store, catalog: Catalog) -> None:  # noqa: F811
    """Reproduction: ~13,600 status callbacks refused while the service was down were
    never retried by the provider, and 5,000+ delivered SMS stayed "sent"."""
    failing = "+8613900000036"  # in the broadband-outage audience in ningbo
    async for env in make_env(store, catalog, fates=Fates(step_delay=0.005, receipt_delay=0.01,
                                                           failures={failing: 30003})):
        services = env.services
        # The service is "down" for the callbacks: they go to a port nobody listens on.
        down = dataclasses.replace(services.settings, public_url=f"http://127.0.0.1:{free_port()}")
        services.outbox.sms = sms_channel(down, env.clock)
        try:
            body = await env.trigger()
            await env.settle()
            await asyncio.sleep(0.3)  # every message reaches its final state at the sandbox
        finally:
            await services.outbox.sms.close()
        services.outbox.sms = sms_channel(services.settings, env.clock)
        sms = [d for d in await services.store.deliveries(body["id"]) if d.key.medium == "sms"]  # notices too
        assert sms and {d.status for d in sms} == {DeliveryStatus.sent}
        # not yet: a status may still come by itself
        assert await services.reconciler.run(after=timedelta(minutes=10)) == 0
        env.clock.advance(timedelta(minutes=11))
        moved = await services.reconciler.run(after=timedelta(minutes=10))
        after = {d.key.as_id(): d for d in await services.store.deliveries(body["id"]) if d.key.medium == "sms"}
        assert moved == len(sms)
        assert {d.status for d in after.values() if d.address != failing} == {DeliveryStatus.delivered}
        [lost] = [d for d in after.values() if d.address == failing]
        assert lost.status == DeliveryStatus.undelivered
        # handled as after a callback: the failure is on the timeline with its email fallback
        failed = [e.data for e in await services.store.timeline(body["id"]) if e.kind == "delivery_failed"]
        assert failed == [{"person": lost.key.person_id, "channel": "sms", "error": "undelivered",
                           "fallback": "email already sent"}]
        assert await services.store.unsettled_sms(env.clock.now(), 100) == []
        await services.outbox.sms.close()


async def test_a_status_still_sent_is_looked_up_again_later_then_given_up(store: Store, catalog: Catalog) -> None:  # noqa: F811
    async for env in make_env(store, catalog, fates=Fates(step_delay=0.005, receipt_delay=3600)):
        body = await env.trigger()
        await env.services.outbox.drain()  # (not env.settle: the sandbox's receipts take an hour)
        services = env.services
        sms = [d for d in await services.store.deliveries(body["id"]) if d.key.medium == "sms"]
        env.clock.advance(timedelta(minutes=11))
        assert await services.reconciler.run(after=timedelta(minutes=10)) == 0  # the sandbox says "sent"
        assert await services.store.unsettled_sms(env.clock.now(), 100) == []  # deferred
        env.clock.advance(timedelta(minutes=11))
        assert len(await services.store.unsettled_sms(env.clock.now() - timedelta(minutes=10), 100)) == len(sms)
        env.clock.advance(timedelta(days=2))
        assert await services.reconciler.run(after=timedelta(minutes=10)) == 0
        assert await services.store.unsettled_sms(env.clock.now(), 100) == []  # given up after a day


# --- Redis persistence ----------------------------------------------------------------


def complaint(i: int) -> dict[str, Any]:
    return {"id": f"c-{i}", "received_at": T0.isoformat(), "channel": "hotline", "category": "broadband",
            "region": "ningbo", "text": "宽带断网"}


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path, durable=False).start()
    yield server
    server.kill()


async def test_a_redis_that_keeps_nothing_is_refused_unless_allowed(volatile_redis: RedisServer, catalog: Catalog) -> None:  # noqa: F811
    settings = Settings(store_url=volatile_redis.url, tick_seconds=0, outbox_worker=False, subscriber_key="k")
    app = create_app(settings, catalog=catalog)
    with pytest.raises(StoreError, match="appendonly"):
        async with TestClient(TestServer(app)):
            pass
    allowed = create_app(dataclasses.replace(settings, redis_allow_volatile=True), catalog=catalog)
    async with TestClient(TestServer(allowed)) as client:
        assert (await client.get("/healthz")).status == 200


def test_serve_says_why_it_refuses_a_volatile_redis(volatile_redis: RedisServer, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.commands.cli", "serve", "--port", str(free_port()), "--no-channels",
         "--config", str(REPO), "--store", volatile_redis.url],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "refusing to start" in done.stderr and "COORDINATOR_REDIS_ALLOW_VOLATILE=1" in done.stderr


@pytest.mark.parametrize("durable", [True, False], ids=["appendonly", "volatile"])
async def test_acknowledged_complaints_across_a_redis_sigkill(durable: bool, tmp_path: Path) -> None:
    """With the documented settings (appendonly yes) every complaint answered 200 is
    there after redis-server is killed with SIGKILL and restarted; without them they are
    gone, which is why the service refuses such a Redis."""
    server = RedisServer(tmp_path, durable=durable).start()
    try:
        settings = Settings(store_url=server.url, tick_seconds=0, outbox_worker=False, subscriber_key="k",
                            admin_token=ADMIN_TOKEN, redis_allow_volatile=not durable)
        clock_now = T0 + timedelta(minutes=1)
        from coordinator.clock import ManualClock

        app = create_app(settings, clock=ManualClock(clock_now), catalog=await _catalog())
        async with TestClient(TestServer(app), headers=ADMIN_HEADERS) as client:
            accepted = 0
            for batch in range(5):
                resp = await client.post("/api/complaints", json=[complaint(batch * 200 + i) for i in range(200)])
                assert resp.status == 200
                accepted += (await resp.json())["accepted"]
            assert accepted == 1000
        server.kill()
        server.start()
        store = await RedisStore.open(server.url, BUCKET_SECONDS)
        try:
            kept = await store.count_complaints()
        finally:
            await store.close()
        assert kept == (1000 if durable else 0)
    finally:
        server.kill()


async def _catalog() -> Catalog:
    from coordinator.config.catalog import load_catalog

    return load_catalog(REPO)


# --- a burst of clients ---------------------------------------------------------------


@pytest.fixture
async def small_pool_client(redis_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    prefix = f"burst-{tmp_path.name}:"
    settings = Settings(store_url=f"{redis_url}?prefix={prefix}", tick_seconds=0, outbox_worker=False,
                        subscriber_key="k", admin_token=ADMIN_TOKEN, redis_max_connections=4)
    from coordinator.clock import ManualClock

    app = create_app(settings, clock=ManualClock(T0 + timedelta(minutes=1)), catalog=await _catalog())
    async with TestClient(TestServer(app), headers=ADMIN_HEADERS) as client:
        yield client


async def test_200_concurrent_intake_clients_wait_for_a_connection(small_pool_client: TestClient) -> None:
    """Reproduction: with 200 concurrent clients 96% of intake requests answered 503
    ("Too many connections"): the pool raised instead of waiting. Here the pool holds 4."""
    async def post(i: int) -> int:
        resp = await small_pool_client.post("/api/complaints", json=[complaint(i * 5 + k) for k in range(5)])
        return resp.status

    statuses = await asyncio.gather(*(post(i) for i in range(200)))
    assert sorted(set(statuses)) == [200]
