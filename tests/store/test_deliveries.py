"""The delivery store contract (deliveries and the outbox), on SQLite and on a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from coordinator.models import (
    DeliveryKey,
    DeliveryStatus,
)
from coordinator.store import Store
from coordinator.store.records import StatusUpdate
from coordinator.store.redis import RedisStore
from coordinator.store.sqlite import SqliteStore

from ..conftest import BUCKET_SECONDS
from .builders import T0, delivery, update


async def test_delivery_is_deduplicated_and_only_moves_forward(store: Store) -> None:
    d = delivery("p1")
    assert await store.add_delivery(d) is True
    assert await store.add_delivery(d) is False
    assert await store.add_delivery(delivery("p1", "email")) is True
    at = T0 + timedelta(seconds=5)
    sent = await update(store, d.key, DeliveryStatus.sent, at=at, provider_id="SM1")
    assert sent.status == DeliveryStatus.sent and sent.provider_id == "SM1"
    done = await update(store, d.key, DeliveryStatus.delivered, at=at)
    assert done.status == DeliveryStatus.delivered and done.provider_id == "SM1"
    # a late "sent" and a duplicate "delivered" change nothing; neither does a late failure
    for late in (DeliveryStatus.sent, DeliveryStatus.delivered, DeliveryStatus.failed):
        assert (await update(store, d.key, late, at=at, error="x")).status == DeliveryStatus.delivered
    stored = await store.get_delivery(d.key)
    assert stored is not None and stored.status == DeliveryStatus.delivered and stored.error is None
    listed = await store.deliveries("INC-1")
    assert sorted((x.key.person_id, x.key.channel, x.status) for x in listed) == [
        ("p1", "email", DeliveryStatus.queued), ("p1", "sms", DeliveryStatus.delivered),
    ]
    assert await store.deliveries("INC-2") == []


async def test_an_outbox_from_before_the_per_medium_queues_is_taken_over(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sms, email = delivery("p1"), delivery("p1", "email-reminder")
    if store_kind == "sqlite":
        path = tmp_path / "old.db"
        old = await SqliteStore.open(path, BUCKET_SECONDS)
        await old.add_deliveries([sms, email])
        await old._db.execute("DROP INDEX deliveries_outbox_medium")
        await old._db.execute("ALTER TABLE deliveries DROP COLUMN medium")
        await old._db.commit()
        await old.close()
        reopen = lambda: SqliteStore.open(path, BUCKET_SECONDS)  # noqa: E731
    else:
        url, prefix = request.getfixturevalue("redis_url"), f"test-{uuid.uuid4().hex[:12]}:"
        old_redis = await RedisStore.open(url, BUCKET_SECONDS, prefix=prefix)
        await old_redis.add_deliveries([sms, email])
        r = old_redis._r
        for medium in ("sms", "email"):
            for did, due in await r.zrange(old_redis.keys.outbox(medium), 0, -1, withscores=True):
                await r.zadd(old_redis.keys.shared_outbox(), {did: due})
            await r.delete(old_redis.keys.outbox(medium))
        await old_redis.close()
        reopen = lambda: RedisStore.open(url, BUCKET_SECONDS, prefix=prefix)  # noqa: E731
    store = await reopen()
    try:
        assert await store.outbox_size() == 2
        assert [d.key for d in await store.claim_deliveries("w", T0, 30, 10, medium="email")] == [email.key]
        assert [d.key for d in await store.claim_deliveries("w", T0, 30, 10, medium="sms")] == [sms.key]
    finally:
        await store.close()


async def test_outbox_claims_leases_retries_and_finishes(store: Store) -> None:
    for person in ("p1", "p2", "p3"):
        assert await store.add_delivery(delivery(person))
    assert await store.add_delivery(delivery("p4"), due=T0 + timedelta(minutes=5))
    assert await store.outbox_size() == 4
    first = await store.claim_deliveries("w1", T0, 30, 2)
    second = await store.claim_deliveries("w2", T0, 30, 10)
    assert len(first) == 2 and len(second) == 1  # p4 is not due yet
    assert {d.key.person_id for d in first + second} == {"p1", "p2", "p3"}
    assert await store.claim_deliveries("w3", T0 + timedelta(seconds=10), 30, 10) == []
    sent = first[0].key
    await update(store, sent, DeliveryStatus.sent, at=T0, provider_id="SM123")
    await store.finish_delivery(sent)
    found = await store.delivery_by_provider("SM123")
    assert found is not None and found.key == sent
    assert await store.delivery_by_provider("SM404") is None
    await store.retry_delivery(first[1].key, T0 + timedelta(seconds=20), attempts=1, error="20429")
    # w2 died holding its claim: the lease lapses and the delivery is due again
    again = await store.claim_deliveries("w4", T0 + timedelta(seconds=31), 30, 10)
    assert {d.key.person_id for d in again} == {first[1].key.person_id, second[0].key.person_id}
    retried = next(d for d in again if d.key == first[1].key)
    assert (retried.attempts, retried.error) == (1, "20429")
    # Each keeps the time it was first claimed: a later claim knows an earlier worker had it.
    assert [d.claimed_at for d in first + second] == [T0] * 3
    assert [d.claimed_at for d in again] == [T0, T0]
    assert await store.outbox_size() == 3


async def test_concurrent_claims_never_share_a_delivery(store: Store) -> None:
    for i in range(60):
        await store.add_delivery(delivery(f"p{i}"))
    claims = await asyncio.gather(*(store.claim_deliveries(f"w{i}", T0, 30, 7) for i in range(12)))
    ids = [d.key.as_id() for claim in claims for d in claim]
    assert len(ids) == len(set(ids)) == 60


async def test_deliveries_are_added_in_batches_deduplicated(store: Store) -> None:
    assert await store.add_deliveries([delivery(f"p{i}") for i in range(5)]) == 5
    assert await store.add_deliveries([delivery("p4"), delivery("p5"), delivery("p5", "email")]) == 2
    assert await store.outbox_size() == 7
    assert len(await store.deliveries("INC-1")) == 7


async def test_each_medium_is_claimed_on_its_own(store: Store) -> None:
    await store.add_deliveries([delivery("p1"), delivery("p1", "email"), delivery("p2", "sms-reminder"),
                                delivery("p2", "email-role-leader-assigned")])
    sms = await store.claim_deliveries("w1", T0, 30, 10, medium="sms")
    assert sorted(d.key.channel for d in sms) == ["sms", "sms-reminder"]
    assert await store.claim_deliveries("w1", T0, 30, 10, medium="sms") == []
    email = await store.claim_deliveries("w2", T0, 30, 1, medium="email")
    assert [d.key.medium for d in email] == ["email"]
    rest = await store.claim_deliveries("w3", T0, 30, 10)  # no medium: any
    assert len(rest) == 1 and rest[0].key.medium == "email" and rest[0].key != email[0].key
    await store.retry_delivery(sms[0].key, T0 + timedelta(seconds=5), attempts=1, error="20429")
    assert [d.key for d in await store.claim_deliveries("w1", T0 + timedelta(seconds=5), 30, 10, medium="sms")] \
        == [sms[0].key]
    assert await store.outbox_size() == 4


async def test_status_updates_in_a_batch(store: Store) -> None:
    a, b, c = delivery("p1"), delivery("p2"), delivery("p3", "email")
    await store.add_deliveries([a, b, c])
    await store.claim_deliveries("w1", T0, 30, 10)
    at = T0 + timedelta(seconds=1)
    answers = await store.update_deliveries([
        # a callback beats the sender's own record: the record still finishes it and
        # keeps the provider id, but does not move the status back
        StatusUpdate(a.key, DeliveryStatus.delivered, at, provider_id="SM1"),
        StatusUpdate(a.key, DeliveryStatus.sent, at, provider_id="SM1", finish=True),
        StatusUpdate(b.key, DeliveryStatus.sent, at, provider_id="SM2", finish=True),
        StatusUpdate(None, DeliveryStatus.delivered, at, provider_id="SM2"),  # by the provider id alone
        StatusUpdate(None, DeliveryStatus.delivered, at, provider_id="SM404"),
        StatusUpdate(DeliveryKey(incident_id="INC-1", version=1, person_id="nobody", channel="sms"),
                     DeliveryStatus.sent, at),
        StatusUpdate(c.key, DeliveryStatus.failed, at, error="smtp-550", finish=True),
        StatusUpdate(c.key, DeliveryStatus.failed, at, error="later"),  # a duplicate changes nothing
    ])
    assert [(m.delivery.status if m.delivery else None, m.moved) for m in answers] == [
        (DeliveryStatus.delivered, True), (DeliveryStatus.delivered, False),
        (DeliveryStatus.sent, True), (DeliveryStatus.delivered, True),
        (None, False), (None, False),
        (DeliveryStatus.failed, True), (DeliveryStatus.failed, False),
    ]
    assert await store.outbox_size() == 0
    stored = {d.key.person_id: d for d in await store.deliveries("INC-1")}
    assert (stored["p1"].status, stored["p1"].provider_id) == (DeliveryStatus.delivered, "SM1")
    assert (stored["p2"].status, stored["p2"].provider_id) == (DeliveryStatus.delivered, "SM2")
    assert (stored["p3"].status, stored["p3"].error) == (DeliveryStatus.failed, "smtp-550")
    assert stored["p2"].updated_at == at
    found = await store.delivery_by_provider("SM2")
    assert found is not None and found.key == b.key
    assert await store.update_deliveries([]) == []


async def test_a_provider_id_is_kept_when_the_status_does_not_move(store: Store) -> None:
    d = delivery("p1")
    await store.add_delivery(d)
    await update(store, d.key, DeliveryStatus.sending, at=T0)  # a callback by our id, no SID
    [(kept, moved)] = await store.update_deliveries([StatusUpdate(d.key, DeliveryStatus.queued, T0, "SM9", finish=True)])
    assert not moved and kept is not None and (kept.status, kept.provider_id) == (DeliveryStatus.sending, "SM9")
    found = await store.delivery_by_provider("SM9")
    assert found is not None and found.key == d.key
