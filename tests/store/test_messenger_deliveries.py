"""Messenger deliveries in the store contract (issue 19), on SQLite and on a real Redis:
their own outbox queue per medium, one call's id shared by many deliveries (kept unique
per delivery as `call:userid`), and the `read` status past `delivered` that no later
receipt moves back."""

from __future__ import annotations

from datetime import timedelta

from coordinator.models import DeliveryStatus, Medium
from coordinator.store import Store

from .builders import T0, delivery, update


async def test_each_messenger_has_its_own_queue_and_read_only_moves_forward(store: Store) -> None:
    cards = [delivery(f"p{i}", "dingtalk") for i in range(3)] + [delivery("p9", "wecom")]
    assert await store.add_deliveries(cards + [delivery("p1", "sms")]) == 5
    assert await store.outbox_size() == 5
    claimed = await store.claim_deliveries("w1", T0, 8.0, 100, medium="dingtalk")
    assert sorted(d.key.person_id for d in claimed) == ["p0", "p1", "p2"]
    assert {d.key.medium for d in claimed} == {Medium.dingtalk}
    assert [d.key.person_id for d in await store.claim_deliveries("w1", T0, 8.0, 100, medium="wecom")] == ["p9"]
    at = T0 + timedelta(seconds=2)
    for d in claimed:  # one asyncsend_v2 call, its task id shared: unique per delivery with the userid
        sent = await update(store, d.key, DeliveryStatus.sent, at=at, provider_id=f"256271667526:{d.key.person_id}")
        assert sent.status == DeliveryStatus.sent
    read = await update(store, claimed[0].key, DeliveryStatus.read, at=at + timedelta(minutes=1))
    assert read.status == DeliveryStatus.read and read.provider_id == "256271667526:p0"
    for late in (DeliveryStatus.delivered, DeliveryStatus.sent, DeliveryStatus.failed):
        assert (await update(store, claimed[0].key, late, at=at + timedelta(minutes=2))).status == DeliveryStatus.read
    unread = await update(store, claimed[1].key, DeliveryStatus.delivered, at=at)
    assert unread.status == DeliveryStatus.delivered
    found = await store.delivery_by_provider("256271667526:p2")
    assert found is not None and found.key == claimed[2].key
