"""The webhook side of the store contract, on SQLite and on a real Redis: an event is
queued once per subscriber (again only after it is forgotten), claimed by one owner at a
time with a lease that lapses when the owner dies, retried only by its owner, finished
for good, and counted per subscriber while it waits."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from coordinator.store import Store
from coordinator.store.protocols.webhooks import KEEP_FINISHED, WebhookDelivery

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)


def delivery(event_id: str, subscriber: str = "crm", at: datetime = T0) -> WebhookDelivery:
    return WebhookDelivery(subscriber=subscriber, event_id=event_id, event_type="cn.coordinator.incident.opened",
                           body='{"id": "%s"}' % event_id, created_at=at)


async def test_an_event_is_queued_once_per_subscriber(store: Store) -> None:
    assert await store.enqueue_webhooks([delivery("e1"), delivery("e1", "screen"), delivery("e2")]) == 3
    assert await store.enqueue_webhooks([delivery("e1"), delivery("e3")]) == 1
    assert await store.webhook_queue_depths() == {"crm": 3, "screen": 1}
    assert await store.enqueue_webhooks([]) == 0


async def test_claims_are_due_first_leased_and_exclusive(store: Store) -> None:
    await store.enqueue_webhooks([delivery("late", at=T0 + timedelta(seconds=30)), delivery("b", at=T0 + timedelta(seconds=1)),
                                  delivery("a"), delivery("other", "screen")])
    claimed = await store.claim_webhooks("crm", "w1", T0 + timedelta(seconds=5), 20, 10)
    assert [d.event_id for d in claimed] == ["a", "b"]  # the late one is not due; other subscribers' apart
    assert claimed[0].body == '{"id": "a"}' and claimed[0].created_at == T0
    assert await store.claim_webhooks("crm", "w2", T0 + timedelta(seconds=10), 20, 10) == []  # leased
    # The owner died: the lease lapses and another takes them.
    again = await store.claim_webhooks("crm", "w2", T0 + timedelta(seconds=26), 20, 10)
    assert sorted(d.event_id for d in again) == ["a", "b"]
    # Many claimants at once: each due event goes to exactly one.
    await store.enqueue_webhooks([delivery(f"m{i}", at=T0) for i in range(20)])
    got = await asyncio.gather(*(store.claim_webhooks("crm", f"c{i}", T0 + timedelta(seconds=27), 20, 5)
                                 for i in range(8)))
    ids = [d.event_id for batch in got for d in batch]
    assert sorted(ids) == sorted(f"m{i}" for i in range(20))


async def test_retry_only_by_its_owner_and_with_its_attempts(store: Store) -> None:
    await store.enqueue_webhooks([delivery("e1")])
    [claimed] = await store.claim_webhooks("crm", "w1", T0, 20, 10)
    failed = claimed.model_copy(update={"attempts": 1, "last_error": "HTTP 500"})
    assert not await store.retry_webhook(failed, "someone-else", T0 + timedelta(seconds=2))
    assert await store.retry_webhook(failed, "w1", T0 + timedelta(seconds=2))
    assert not await store.retry_webhook(failed, "w1", T0 + timedelta(seconds=2))  # no longer held
    assert await store.claim_webhooks("crm", "w2", T0 + timedelta(seconds=1), 20, 10) == []  # not due yet
    [back] = await store.claim_webhooks("crm", "w2", T0 + timedelta(seconds=2), 20, 10)
    assert back.attempts == 1 and back.last_error == "HTTP 500" and back.body == claimed.body


async def test_a_finished_event_leaves_the_queue_and_is_not_queued_again(store: Store) -> None:
    await store.enqueue_webhooks([delivery("e1"), delivery("e2")])
    [first, _] = await store.claim_webhooks("crm", "w1", T0, 20, 10)
    await store.finish_webhook("crm", first.event_id, T0)
    assert await store.webhook_queue_depths() == {"crm": 1}
    assert not await store.retry_webhook(first, "w1", T0)  # finished: the owner cannot put it back
    assert await store.enqueue_webhooks([delivery("e1")]) == 0  # remembered
    claimed = await store.claim_webhooks("crm", "w1", T0 + timedelta(hours=1), 20, 10)
    assert [d.event_id for d in claimed] == ["e2"]
    await store.finish_webhook("crm", "e2", T0 + timedelta(hours=1))
    assert await store.webhook_queue_depths() == {}


async def test_sqlite_forgets_finished_events_after_keep(store: Store, store_kind: str) -> None:
    """SQLite prunes finished rows as later ones finish; Redis lets the hash expire
    (its TTL is checked here instead)."""
    await store.enqueue_webhooks([delivery("old")])
    await store.finish_webhook("crm", "old", T0)
    if store_kind == "redis":
        ttl = await store._r.ttl(store.keys.webhook("crm", "old"))  # type: ignore[attr-defined]
        assert KEEP_FINISHED.total_seconds() - 5 <= ttl <= KEEP_FINISHED.total_seconds()
        return
    later = T0 + KEEP_FINISHED + timedelta(seconds=1)
    await store.enqueue_webhooks([delivery("new", at=later)])
    await store.finish_webhook("crm", "new", later)
    assert await store.enqueue_webhooks([delivery("old", at=later)]) == 1
