"""Several instances share the work on one store (on SQLite, two sets of services in one
process stand for two racing coroutines): one incident per event however they race, a
dead publisher's half-written publication finished by a live peer, claims a live worker
keeps however long they queue."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from coordinator import publication as publication_module
from coordinator.app import build_services
from coordinator.channels.configured import sms_channel
from coordinator.config.catalog import Catalog
from coordinator.clock import ManualClock, SystemClock
from coordinator.errors import StoreError
from coordinator.publication import PUBLISH_LEASE_SECONDS
from coordinator.models import Delivery, DeliveryKey, Surge
from coordinator.outbox import OutboxLimits
from coordinator.sandbox import TwilioSandbox
from coordinator.config.settings import Settings
from coordinator.store import Store
from coordinator.web.state import Services

from .test_fanout import dies_after_two_chunks

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
SID, TOKEN, FROM = "AC" + "1" * 32, "sandbox-auth-token", "+15005550006"
SETTINGS = Settings(subscriber_key="k", tick_seconds=0, ack_secret="a")



async def two(store: Store, other: Store, catalog: Catalog, clock: Any,
              settings: Settings = SETTINGS, **channels: Any) -> tuple[Services, Services]:
    a = await build_services(settings, store=store, catalog=catalog, clock=clock, **channels)
    b = await build_services(settings, store=other, catalog=catalog, clock=clock, **channels)
    return a, b


def surge(key: str) -> Surge:
    category, region = key.split("/")
    return Surge(key=key, category=category, region=region, onset=T0 - timedelta(minutes=10), detected_at=T0,
                 observed=120, expected=10.0, ratio=12.0, score=0.99)


async def test_a_regional_and_a_category_wide_surge_at_once_open_one_incident(
    store: Store, other_store: Store, catalog: Catalog
) -> None:
    """Reproduction: `broadband/ningbo` and `broadband/*` reported at the same moment by
    two instances on one Redis both opened an incident (5 of 5 rounds)."""
    a, b = await two(store, other_store, catalog, ManualClock(T0))
    for round_ in range(5):
        opened = await asyncio.gather(a.pipeline.on_surge(surge("broadband/ningbo")),
                                      b.pipeline.on_surge(surge("broadband/*")))
        assert opened[0] is not None and opened[1] is not None
        assert opened[0].id == opened[1].id, round_
        live = await store.list_incidents(open_only=True)
        assert len(live) == 1 and live[0].surge_count == 2
        await a.pipeline.resolve(live[0].id, "chen-li")


async def test_a_dead_instances_half_written_publication_is_finished_by_a_live_one(
    store: Store, other_store: Store, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reproduction: instance A was killed while `POST /api/incidents` was still writing
    deliveries; B, running, never finished it (only an outbox starting did)."""
    clock = ManualClock(T0)
    a, b = await two(store, other_store, catalog, clock)
    add_deliveries = dies_after_two_chunks(monkeypatch, store, "instance A was killed")
    with pytest.raises(StoreError):
        await a.pipeline.trigger("broadband-outage", region="ningbo", actor="chen-li")
    monkeypatch.setattr(store, "add_deliveries", add_deliveries)
    [incident] = await other_store.list_incidents()
    written = len([d for d in await other_store.deliveries(incident.id) if d.key.version == 1])
    assert written > 0

    # while A's claim on the publication may still be alive, B leaves it alone
    clock.advance(timedelta(seconds=PUBLISH_LEASE_SECONDS - 1))
    await b.pipeline.tick()
    assert len([d for d in await other_store.deliveries(incident.id) if d.key.version == 1]) == written
    # then B's next tick finishes it: everyone in scope, once, and it is marked published
    clock.advance(timedelta(seconds=2))
    await b.pipeline.tick()
    v1 = [d for d in await other_store.deliveries(incident.id) if d.key.version == 1]
    assert len(v1) > written
    assert len({(d.key.person_id, d.key.channel) for d in v1}) == len(v1)
    sent = [e for e in await other_store.timeline(incident.id) if e.kind == "script_sent"]
    assert [e.data["version"] for e in sent] == [1]
    await a.pipeline.tick()
    await b.pipeline.tick()
    assert len([e for e in await other_store.timeline(incident.id) if e.kind == "script_sent"]) == 1


async def test_a_publication_in_progress_is_not_taken_over(store: Store, other_store: Store, catalog: Catalog,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock(T0)
    a, b = await two(store, other_store, catalog, clock)
    monkeypatch.setattr(publication_module, "FIRST_CHUNK", 3)
    monkeypatch.setattr(publication_module, "PUBLISH_CHUNK", 3)
    ticks: list[int] = []
    add_deliveries = store.add_deliveries

    async def a_peer_ticks_meanwhile(deliveries: Any) -> int:
        clock.advance(timedelta(seconds=PUBLISH_LEASE_SECONDS / 2))  # a slow chunk: A renews after each
        for incident in await other_store.list_incidents():
            ticks.append(await b.pipeline.publication.finish_publishing(incident, await other_store.finished_steps(incident.id)))
        return await add_deliveries(deliveries)

    monkeypatch.setattr(store, "add_deliveries", a_peer_ticks_meanwhile)
    opened = await a.pipeline.trigger("broadband-outage", region="ningbo", actor="chen-li")
    assert len(ticks) > 3 and set(ticks) == {0}  # B never wrote a delivery of A's publication
    sent = [e for e in await store.timeline(opened.incident.id) if e.kind == "script_sent"]
    assert len(sent) == 1 and sent[0].data["deliveries"] > 6


async def test_claims_waiting_for_a_send_slot_keep_their_lease(
    store: Store, other_store: Store, catalog: Catalog, tmp_path: Path
) -> None:
    """Reproduction: with two instances, deliveries claimed but queued behind slow sends
    were left for the next claim and waited out a 60 s lease (the last 450 of a fan-out).
    Now the holder renews its leases: nothing is claimed twice, everything leaves."""
    clock = SystemClock()
    async with TwilioSandbox(SID, TOKEN, numbers=(FROM,), latency=0.1, seed=1) as sandbox:
        settings = Settings(subscriber_key="k", tick_seconds=0, ack_secret="a", twilio_account_sid=SID,
                            twilio_auth_token=TOKEN, twilio_from=FROM, twilio_base_url=sandbox.base_url,
                            sms_concurrency=2)
        sms_a, sms_b = sms_channel(settings, clock), sms_channel(settings, clock)
        a = await build_services(settings, store=store, catalog=catalog, clock=clock, sms=sms_a)
        b = await build_services(settings, store=other_store, catalog=catalog, clock=clock, sms=sms_b)
        limits = OutboxLimits(sms_concurrency=2, lease_seconds=0.9)
        for services in (a, b):
            services.outbox.limits = limits
        deliveries = [Delivery(key=DeliveryKey(incident_id="INC-1", version=0, person_id=f"p{i:02d}",
                                               channel="sms-notice"), address=f"+86138000000{i:02d}",
                               content_hash="", text=f"通知{i}", updated_at=clock.now()) for i in range(24)]
        await store.add_deliveries(deliveries)
        claims: dict[str, int] = {}
        for s in {id(store): store, id(other_store): other_store}.values():
            original = s.claim_deliveries

            async def counting(*args: Any, _original: Any = original, **kwargs: Any) -> list[Delivery]:
                got: list[Delivery] = await _original(*args, **kwargs)
                for d in got:
                    claims[d.key.as_id()] = claims.get(d.key.as_id(), 0) + 1
                return got

            s.claim_deliveries = counting  # type: ignore[method-assign]
        stop = asyncio.Event()
        workers = [asyncio.create_task(x.outbox.run(stop, idle_seconds=0.05)) for x in (a, b)]
        try:
            async with asyncio.timeout(30):
                while await store.outbox_size():
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            a.outbox.wake.set()
            b.outbox.wake.set()
            await asyncio.gather(*workers)
            await sms_a.close()
            await sms_b.close()
        # 24 sends at 0.1 s, two at a time per instance: most waited several leases' time
        assert sorted(claims.values()) == [1] * 24, claims
        assert all(len(sandbox.received_by(d.address)) == 1 for d in deliveries)
