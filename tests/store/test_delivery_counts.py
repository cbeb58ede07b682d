"""The counts GET /metrics reads from the store (delivery store contract, on SQLite and on
a real Redis): who has not acknowledged the version in force, and the outbox's oldest
claim."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from coordinator.models import Ack, Delivery, DeliveryKey, DeliveryStatus
from coordinator.store import Store
from coordinator.store.records import StatusUpdate
from coordinator.store.redis import RedisStore
from coordinator.store.sqlite import SqliteStore

from ..conftest import BUCKET_SECONDS

from .builders import T0, incident, opened


def sent(incident_id: str, version: int, person: str, channel: str = "sms") -> Delivery:
    return Delivery(key=DeliveryKey(incident_id=incident_id, version=version, person_id=person, channel=channel),
                    address="+8613900000001", content_hash="abc", updated_at=T0)


def ack(incident_id: str, person: str, version: int | None, role: str | None = None) -> Ack:
    return Ack(incident_id=incident_id, person_id=person, version=version, role=role, via="sms", at=T0)


async def test_unacknowledged_counts_people_sent_the_version_without_its_ack(store: Store) -> None:
    for iid in ("INC-1", "INC-10", "INC-2"):
        await store.open_incident(incident(iid, surge_key=None), opened())
    await store.add_deliveries([
        sent("INC-1", 1, "p1"), sent("INC-1", 1, "p1", "email"),  # one person, two media
        sent("INC-1", 1, "p2"), sent("INC-1", 1, "p3", "email"),
        sent("INC-1", 1, "p4", "sms-reminder"),  # a notice, not the script: not counted
        sent("INC-1", 2, "p5"), sent("INC-1", 10, "p6"), sent("INC-1", 0, "p7", "sms-role-leader-assigned"),
        sent("INC-10", 1, "p1"), sent("INC-10", 1, "p2"),  # another incident whose id starts alike
        sent("INC-2", 3, "p1"),
    ])
    assert await store.unacknowledged({"INC-1": 1, "INC-10": 1, "INC-2": 3}) == {"INC-1": 3, "INC-10": 2, "INC-2": 1}
    await store.record_ack(ack("INC-1", "p1", 1))
    await store.record_ack(ack("INC-1", "p2", 2))  # another version's ack counts not
    await store.record_ack(ack("INC-1", "p3", None, role="leader"))  # nor a role's
    await store.record_ack(ack("INC-10", "p2", 1))
    await store.record_ack(ack("INC-1", "p9", 1))  # someone never sent it
    assert await store.unacknowledged({"INC-1": 1, "INC-10": 1, "INC-2": 3}) == {"INC-1": 2, "INC-10": 1, "INC-2": 1}
    assert await store.unacknowledged({"INC-1": 2, "INC-1x": 1}) == {"INC-1": 1, "INC-1x": 0}
    assert await store.unacknowledged({"INC-1": 10}) == {"INC-1": 1}
    assert await store.unacknowledged({}) == {}


async def test_oldest_claim_is_the_first_claim_still_unfinished(store: Store) -> None:
    assert await store.oldest_claim() is None
    a, b, c = sent("INC-1", 1, "a"), sent("INC-1", 1, "b"), sent("INC-1", 1, "c", "email")
    await store.add_deliveries([a, b, c])
    assert await store.oldest_claim() is None  # waiting, never claimed
    [first] = await store.claim_deliveries("w1", T0, 30, 1, "sms")
    later = T0 + timedelta(seconds=10)
    claimed = await store.claim_deliveries("w1", later, 30, 10)
    assert {d.key.person_id for d in claimed} == {"b", "c"}
    assert await store.oldest_claim() == T0
    # retried: still claimed and unfinished since its first claim
    await store.retry_delivery(first.key, T0 + timedelta(seconds=60), attempts=1, error="timeout")
    assert await store.oldest_claim() == T0
    await store.claim_deliveries("w2", T0 + timedelta(seconds=61), 30, 10)
    assert await store.oldest_claim() == T0
    await store.update_deliveries([StatusUpdate(first.key, DeliveryStatus.sent, later, "SM1", finish=True)])
    assert await store.oldest_claim() == later
    await store.finish_delivery(b.key)
    assert await store.oldest_claim() == later
    await store.finish_delivery(c.key)
    assert await store.oldest_claim() is None


async def test_a_store_from_before_the_reach_index_is_filled_in(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    batch = [sent("INC-1", 1, "p1"), sent("INC-1", 1, "p1", "email"), sent("INC-1", 1, "p2"),
             sent("INC-1", 1, "p3", "sms-reminder")]
    if store_kind == "sqlite":
        path = tmp_path / "old.db"
        old: Store = await SqliteStore.open(path, BUCKET_SECONDS)
        await old.open_incident(incident("INC-1", surge_key=None), opened())
        await old.add_deliveries(batch)
        await old.record_ack(ack("INC-1", "p2", 1))
        await old._db.execute("DROP TABLE script_reach")  # type: ignore[attr-defined]
        await old._db.commit()  # type: ignore[attr-defined]
        await old.close()
        reopened: Store = await SqliteStore.open(path, BUCKET_SECONDS)
    else:
        url, prefix = request.getfixturevalue("redis_url"), f"test-{uuid.uuid4().hex[:12]}:"
        old = await RedisStore.open(url, BUCKET_SECONDS, prefix=prefix)
        await old.open_incident(incident("INC-1", surge_key=None), opened())
        await old.add_deliveries(batch)
        await old.record_ack(ack("INC-1", "p2", 1))
        keys = old.keys  # type: ignore[attr-defined]
        await old._r.delete(keys.script_reach("INC-1", 1), keys.reach_index())  # type: ignore[attr-defined]
        assert await old.unacknowledged({"INC-1": 1}) == {"INC-1": 0}  # gone: nothing counted
        await old.close()
        reopened = await RedisStore.open(url, BUCKET_SECONDS, prefix=prefix)
    try:
        assert await reopened.unacknowledged({"INC-1": 1}) == {"INC-1": 1}
    finally:
        if isinstance(reopened, RedisStore):
            async for key in reopened._r.scan_iter(match=f"{prefix}*"):
                await reopened._r.delete(key)
        await reopened.close()
