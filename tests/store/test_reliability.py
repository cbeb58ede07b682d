"""The store's part in operating for real, on every backend: one incident per event
however instances race, the index an SMS reply is matched through, leases a live worker
keeps and a dead one loses, the SMS whose final status never came, and reads that never
see half of a write."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

import pytest

from coordinator.models import (
    Ack,
    Channel,
    Complaint,
    Delivery,
    DeliveryKey,
    DeliveryStatus,
    IncidentStatus,
    TimelineEvent,
)
from coordinator.store import Store
from coordinator.store.records import StatusUpdate
from coordinator.store.redis import RedisStore
from coordinator.store.sqlite import SqliteStore

from ..conftest import BUCKET_SECONDS
from .builders import T0, incident, opened


def sms(person: str, version: int = 1, incident_id: str = "INC-1", channel: str = "sms",
        phone: str | None = None) -> Delivery:
    return Delivery(key=DeliveryKey(incident_id=incident_id, version=version, person_id=person, channel=channel),
                    address=phone or f"+86138000{person[-5:]:0>5}", content_hash="h", updated_at=T0)


async def accepted(store: Store, d: Delivery, at: datetime, status: DeliveryStatus = DeliveryStatus.sent) -> None:
    """What the outbox records when the provider took the message."""
    [(found, _)] = await store.update_deliveries([StatusUpdate(d.key, status, at, provider_id=f"SM{uuid.uuid4().hex}",
                                                              finish=True)])
    assert found is not None


@pytest.fixture
async def second(store: Store, store_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Another instance's view of the same store (Redis: its own connection pool)."""
    if store_kind == "sqlite":
        yield store  # one process owns a SQLite file
        return
    assert isinstance(store, RedisStore)
    other = await RedisStore.open(request.getfixturevalue("redis_url"), BUCKET_SECONDS, prefix=store.keys.prefix)
    yield other
    await other.close()


# --- one incident per event ------------------------------------------------------------


async def test_a_regional_surge_joins_the_open_category_wide_incident_and_back(store: Store) -> None:
    wide, new = await store.open_incident(incident("INC-W", surge_key="broadband/*"), opened(), related=True)
    assert new
    joined, new = await store.open_incident(incident("INC-R", surge_key="broadband/ningbo"), opened(), related=True)
    assert (joined.id, new) == ("INC-W", False)
    # another category, and a drill of the same one, are other events
    _, new = await store.open_incident(incident("INC-B", surge_key="billing/ningbo"), opened(), related=True)
    assert new
    _, new = await store.open_incident(incident("DRL-1", surge_key="drill:broadband/ningbo", drill=True), opened(),
                                       related=True)
    assert new
    # without `related` (a leader's trigger) only the key itself counts
    _, new = await store.open_incident(incident("INC-M", surge_key="broadband/ningbo"), opened("leader"))
    assert new
    await store.save_incident((await store.get_incident("INC-W")).model_copy(
        update={"status": IncidentStatus.resolved, "revision": 1}))
    await store.save_incident((await store.get_incident("INC-M")).model_copy(
        update={"status": IncidentStatus.resolved, "revision": 1}))
    regional, new = await store.open_incident(incident("INC-R2", surge_key="broadband/ningbo"), opened(), related=True)
    assert new
    wide, new = await store.open_incident(incident("INC-W2", surge_key="broadband/*"), opened(), related=True)
    assert (wide.id, new) == ("INC-R2", False)


async def test_the_oldest_related_incident_is_joined(store: Store) -> None:
    await store.open_incident(incident("INC-H", surge_key="broadband/hangzhou", opened_at=T0 + timedelta(minutes=5)),
                              opened(), related=True)
    await store.open_incident(incident("INC-N", surge_key="broadband/ningbo", opened_at=T0), opened(), related=True)
    joined, new = await store.open_incident(incident("INC-W", surge_key="broadband/*"), opened(), related=True)
    assert (joined.id, new) == ("INC-N", False)


async def test_racing_regional_and_category_wide_surges_open_one_incident(store: Store, second: Store) -> None:
    """Two instances report `broadband/ningbo` and `broadband/*` at the same moment."""
    for round_ in range(10):
        keys = [f"broadband{round_}/ningbo", f"broadband{round_}/*"] * 5
        stores = [store, second] * 5
        results = await asyncio.gather(*(
            s.open_incident(incident(f"INC-{round_}-{i}", surge_key=k), opened(), related=True)
            for i, (s, k) in enumerate(zip(stores, keys))))
        assert sum(new for _, new in results) == 1, round_
        assert len({inc.id for inc, _ in results}) == 1


async def test_open_incidents_of_a_redis_store_from_before_the_group_index_are_found(redis_url: str) -> None:
    url = redis_url
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    old = await RedisStore.open(url, BUCKET_SECONDS, prefix=prefix)
    await old.open_incident(incident("INC-OLD", surge_key="broadband/ningbo"), opened())
    await old._r.delete(old.keys.open_group("broadband"), old.keys.open_group_index())  # as written before
    await old.close()
    new = await RedisStore.open(url, BUCKET_SECONDS, prefix=prefix)
    try:
        joined, created = await new.open_incident(incident("INC-W", surge_key="broadband/*"), opened(), related=True)
        assert (joined.id, created) == ("INC-OLD", False)
    finally:
        await new._r.delete(*[k async for k in new._r.scan_iter(match=f"{prefix}*")])
        await new.close()


# --- the SMS a phone got, newest first ------------------------------------------------


async def test_accepted_sms_are_indexed_by_phone_last_recorded_first(store: Store) -> None:
    phone = "+8613800000001"
    role = sms("p1", version=0, channel="sms-role-leader-assigned", phone=phone)
    v1 = sms("p1", 1, phone=phone)
    v2 = sms("p1", 2, phone=phone, incident_id="DRL-1")
    email = Delivery(key=DeliveryKey(incident_id="INC-1", version=1, person_id="p1", channel="email"),
                     address="p1@example.com", content_hash="h", updated_at=T0)
    failed = sms("p1", 3, phone=phone)
    assert await store.add_deliveries([role, v1, v2, email, failed]) == 5
    assert await store.sms_sent_to(phone) == []  # queued: nothing reached the phone yet
    await accepted(store, role, T0)
    await accepted(store, v1, T0, DeliveryStatus.delivered)
    await accepted(store, v2, T0)  # the same second: the order recorded decides
    await accepted(store, email, T0 + timedelta(seconds=3))
    await store.update_deliveries([StatusUpdate(failed.key, DeliveryStatus.failed, T0, error="21211", finish=True)])
    # a status callback neither adds nor moves an entry
    await store.update_deliveries([StatusUpdate(role.key, DeliveryStatus.delivered, T0 + timedelta(seconds=9))])
    got = await store.sms_sent_to(phone)
    assert [d.key for d in got] == [v2.key, v1.key, role.key]
    assert got[1].status == DeliveryStatus.delivered
    assert [d.key for d in await store.sms_sent_to(phone, limit=1)] == [v2.key]
    await accepted(store, v1, T0)  # recorded again (a re-claimed send): keeps its place
    assert [d.key for d in await store.sms_sent_to(phone)] == [v2.key, v1.key, role.key]
    assert await store.sms_sent_to("+8613800009999") == []


async def test_acknowledged_versions_are_looked_up_per_person(store: Store) -> None:
    for version, person in ((1, "p1"), (3, "p1"), (1, "p2")):
        await store.record_ack(Ack(incident_id="INC-1", person_id=person, version=version, via="sms", at=T0))
    await store.record_ack(Ack(incident_id="INC-1", person_id="p1", role="leader", via="sms", at=T0))
    assert await store.acked_versions("INC-1", "p1", [1, 2, 3]) == {1, 3}
    assert await store.acked_versions("INC-1", "p2", [2, 3]) == set()
    assert await store.acked_versions("INC-2", "p1", [1]) == set()
    assert await store.acked_versions("INC-1", "p1", []) == set()


async def test_an_ack_and_its_timeline_event_are_written_together(store: Store) -> None:
    await store.open_incident(incident("INC-1"), opened())
    ack = Ack(incident_id="INC-1", person_id="p1", version=1, via="sms", at=T0)
    event = TimelineEvent(at=T0, kind="script_acked", actor="p1", data={"version": 1, "via": "sms"})
    assert await store.record_ack(ack, event) is True
    assert await store.record_ack(ack.model_copy(update={"via": "email"}), event) is False  # the first wins
    assert [e.kind for e in await store.timeline("INC-1")] == ["opened", "script_acked"]


# --- leases --------------------------------------------------------------------------


async def test_a_live_worker_keeps_its_claims_and_a_dead_ones_lapse(store: Store) -> None:
    for person in ("p1", "p2", "p3"):
        await store.add_delivery(sms(person))
    mine = await store.claim_deliveries("live", T0, 15, 2, medium="sms")
    theirs = await store.claim_deliveries("dead", T0, 15, 1, medium="sms")
    assert len(mine) == 2 and len(theirs) == 1
    # the live worker renews every few seconds; the dead one cannot
    await store.renew_claims("live", [d.key for d in mine], T0 + timedelta(seconds=25))
    later = await store.claim_deliveries("other", T0 + timedelta(seconds=16), 15, 10, medium="sms")
    assert [d.key for d in later] == [theirs[0].key]
    # a finished delivery is not brought back by a late renewal
    await store.update_deliveries([StatusUpdate(mine[0].key, DeliveryStatus.sent, T0, provider_id="SM1", finish=True)])
    await store.renew_claims("live", [d.key for d in mine], T0 + timedelta(seconds=40))
    assert await store.outbox_size() == 2
    again = await store.claim_deliveries("other", T0 + timedelta(seconds=41), 15, 10, medium="sms")
    assert [d.key for d in again] == [mine[1].key, theirs[0].key] or \
        {d.key for d in again} == {mine[1].key, theirs[0].key}


async def test_a_step_claim_is_renewed_by_its_owner_only(store: Store) -> None:
    assert await store.claim_step("INC-1", "publish:v1", "a", T0, 8)
    assert await store.claim_step("INC-1", "publish:v1", "a", T0 + timedelta(seconds=5), 8)  # renewed until 13 s
    assert not await store.claim_step("INC-1", "publish:v1", "b", T0 + timedelta(seconds=10), 8)
    assert await store.claim_step("INC-1", "publish:v1", "b", T0 + timedelta(seconds=14), 8)
    assert not await store.claim_step("INC-1", "publish:v1", "a", T0 + timedelta(seconds=15), 8)
    await store.finish_step("INC-1", "publish:v1")
    assert not await store.claim_step("INC-1", "publish:v1", "b", T0 + timedelta(seconds=16), 8)


# --- SMS whose final status never came -------------------------------------------------


async def test_sms_left_at_sent_are_found_for_a_look_up(store: Store) -> None:
    a, b, c = sms("p1"), sms("p2"), sms("p3")
    mail = Delivery(key=DeliveryKey(incident_id="INC-1", version=1, person_id="p4", channel="email"),
                    address="p4@example.com", content_hash="h", updated_at=T0)
    await store.add_deliveries([a, b, c, mail])
    await accepted(store, a, T0)
    await accepted(store, b, T0 + timedelta(minutes=1))
    await accepted(store, c, T0 + timedelta(minutes=2))
    await accepted(store, mail, T0)  # an email's "sent" is final: nothing to look up
    # c's delivery receipt came: settled
    await store.update_deliveries([StatusUpdate(c.key, DeliveryStatus.delivered, T0 + timedelta(minutes=3))])
    due = await store.unsettled_sms(T0 + timedelta(minutes=1), 10)
    assert [d.key for d in due] == [a.key, b.key]
    assert [d.key for d in await store.unsettled_sms(T0, 10)] == [a.key]
    assert len(await store.unsettled_sms(T0 + timedelta(hours=1), 1)) == 1
    await store.defer_unsettled([a.key], T0 + timedelta(minutes=30))
    assert [d.key for d in await store.unsettled_sms(T0 + timedelta(minutes=10), 10)] == [b.key]
    await store.defer_unsettled([b.key], None)  # given up
    assert [d.key for d in await store.unsettled_sms(T0 + timedelta(days=1), 10)] == [a.key]
    # moving on settles it; deferring a settled one does not bring it back
    await store.update_deliveries([StatusUpdate(a.key, DeliveryStatus.undelivered, T0 + timedelta(hours=1))])
    await store.defer_unsettled([a.key], T0)
    assert await store.unsettled_sms(T0 + timedelta(days=1), 10) == []


# --- reads see whole writes -----------------------------------------------------------


async def test_reads_never_see_a_write_half_done(store: Store) -> None:
    """Concurrent intake while the live page reads the stream names: every read is the
    full set (SQLite used to return a partial set when a read's cursor stayed open on
    the connection another coroutine was writing through)."""
    now = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
    regions = [f"r{i:02d}" for i in range(30)]

    def complaint(cid: str, region: str) -> Complaint:
        return Complaint(id=cid, received_at=now, channel=Channel.app, category="outage", region=region,
                         ingested_at=now)

    await store.add_complaints([complaint(f"seed-{r}", r) for r in regions])
    expected = await store.stream_names()
    assert len(expected) == 31
    stop = asyncio.Event()

    async def intake(worker: int) -> None:
        n = 0
        while not stop.is_set():
            await store.add_complaints([complaint(f"w{worker}-{n}-{j}", regions[j % 30]) for j in range(200)])
            n += 1

    async def page(reads: int) -> list[list[str]]:
        seen = []
        for _ in range(reads):
            seen.append(await store.stream_names())
            await store.count_complaints()
        return seen

    writers = [asyncio.create_task(intake(w)) for w in range(4)]
    try:
        pages = await asyncio.gather(*(page(400 if store.single_process else 40) for _ in range(4)))
    finally:
        stop.set()
        await asyncio.gather(*writers)
    assert sum(names != expected for seen in pages for names in seen) == 0


async def test_sqlite_store_files_keep_working_after_reopening(tmp_path: Path) -> None:
    first = await SqliteStore.open(tmp_path / "s.db", BUCKET_SECONDS)
    await first.add_delivery(sms("p1"))
    await accepted(first, sms("p1"), T0)
    await first.close()
    again = await SqliteStore.open(tmp_path / "s.db", BUCKET_SECONDS)
    try:
        assert [d.key.person_id for d in await again.sms_sent_to(sms("p1").address)] == ["p1"]
    finally:
        await again.close()
