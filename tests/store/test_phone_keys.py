"""The store contract for a person's second phone, on SQLite and on a real Redis: its SMS
(`...:sms@2`) is a delivery of its own beside the first phone's, in the SMS outbox,
found by its provider id alone, and indexed under its own number for replies."""

from __future__ import annotations

from coordinator.models import Delivery, DeliveryKey, DeliveryStatus
from coordinator.store import Store
from coordinator.store.records import StatusUpdate

from .builders import T0

MAIN, SECOND = "+8613900000026", "+8613900000060"


def sms(phone: int, address: str) -> Delivery:
    key = DeliveryKey(incident_id="INC-1", version=1, person_id="p1", medium="sms", phone=phone)
    return Delivery(key=key, address=address, content_hash="abc", updated_at=T0)


async def test_the_second_phones_sms_is_its_own_delivery(store: Store) -> None:
    first, second = sms(0, MAIN), sms(1, SECOND)
    assert await store.add_delivery(first) is True
    assert await store.add_delivery(second) is True
    assert await store.add_delivery(second) is False  # once, whoever adds it again
    assert await store.add_deliveries([sms(1, SECOND)]) == 0
    claimed = await store.claim_deliveries("w", T0, 30, 10, medium="sms")
    assert sorted(d.key.as_id() for d in claimed) == ["INC-1:1:p1:sms", "INC-1:1:p1:sms@2"]
    await store.update_deliveries([StatusUpdate(first.key, DeliveryStatus.sent, T0, provider_id="M1", finish=True),
                                   StatusUpdate(second.key, DeliveryStatus.sent, T0, provider_id="M2", finish=True)])
    await store.update_deliveries([StatusUpdate(None, DeliveryStatus.delivered, T0, provider_id="M2")])
    stored = {d.key.phone: d for d in await store.deliveries("INC-1")}
    assert stored[1].key == second.key and stored[1].status == DeliveryStatus.delivered
    assert stored[0].status == DeliveryStatus.sent
    assert [d.key for d in await store.sms_sent_to(SECOND)] == [second.key]
    assert [d.key for d in await store.sms_sent_to(MAIN)] == [first.key]
    assert await store.claim_deliveries("w", T0, 30, 10, medium="sms") == []
