"""The instance store contract (registry and reload announcements), on SQLite and on a
real Redis."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from coordinator.store import Store
from coordinator.store.protocols.instances import FORGET_SECONDS, RELOADS_KEPT, Instance, ReloadOutcome

from .builders import T0


def instance(name: str, seen_after: float = 0.0, config: str = "c1") -> Instance:
    return Instance(id=name, host="host-a", pid=100, started_at=T0, seen_at=T0 + timedelta(seconds=seen_after),
                    config=config, config_loaded_at=T0)


async def test_the_registry_keeps_who_beat_recently(store: Store) -> None:
    assert await store.instances(T0 - timedelta(days=1)) == []
    await store.beat(instance("w-b"))
    await store.beat(instance("w-a", 5))
    assert [i.id for i in await store.instances(T0)] == ["w-a", "w-b"]
    assert [i.id for i in await store.instances(T0 + timedelta(seconds=5))] == ["w-a"]
    await store.beat(instance("w-b", 10, config="c2"))  # a later beat replaces the earlier
    live = await store.instances(T0 + timedelta(seconds=10))
    assert [(i.id, i.config) for i in live] == [("w-b", "c2")]
    await store.leave("w-b")
    assert [i.id for i in await store.instances(T0)] == ["w-a"]


async def test_an_instance_unseen_for_long_is_forgotten(store: Store) -> None:
    await store.beat(instance("old"))
    await store.beat(instance("new", FORGET_SECONDS + 60))
    assert [i.id for i in await store.instances(T0 - timedelta(days=30))] == ["new"]


async def test_reload_requests_are_numbered_in_order(store: Store) -> None:
    assert await store.last_reload_seq() == 0
    assert await store.reload_requests(0) == []
    first = await store.announce_reload("r1", "admin", T0)
    second = await store.announce_reload("r2", "ops", T0 + timedelta(seconds=1))
    assert (first.seq, first.by, first.at) == (1, "admin", T0)
    assert second.seq == 2 and second.at == T0 + timedelta(seconds=1)
    assert await store.last_reload_seq() == 2
    assert [r.id for r in await store.reload_requests(0)] == ["r1", "r2"]
    assert await store.reload_requests(1) == [second]
    assert await store.reload_requests(2) == []


async def test_announcements_at_once_get_distinct_numbers(store: Store) -> None:
    made = await asyncio.gather(*(store.announce_reload(f"r{i}", "admin", T0) for i in range(20)))
    assert sorted(r.seq for r in made) == list(range(1, 21))
    assert [r.seq for r in await store.reload_requests(0)] == list(range(1, 21))


async def test_only_the_newest_requests_are_kept(store: Store) -> None:
    for i in range(RELOADS_KEPT + 5):
        await store.announce_reload(f"r{i}", "admin", T0)
    await store.record_reload_outcome(ReloadOutcome(request_id="r0", instance="w", took=True, config="c", at=T0))
    await store.announce_reload("last", "admin", T0)
    kept = await store.reload_requests(0)
    assert len(kept) == RELOADS_KEPT and kept[-1].id == "last" and kept[0].seq == 7
    assert await store.last_reload_seq() == RELOADS_KEPT + 6


async def test_outcomes_are_kept_per_request_and_instance(store: Store) -> None:
    await store.announce_reload("r1", "admin", T0)
    assert await store.reload_outcomes("r1") == []
    refused = ReloadOutcome(request_id="r1", instance="w-b", took=False, problems=["playbooks/a.yaml:3: bad"],
                            config="c1", at=T0)
    await store.record_reload_outcome(refused)
    await store.record_reload_outcome(ReloadOutcome(request_id="r1", instance="w-a", took=True, config="c2", at=T0))
    assert [(o.instance, o.took) for o in await store.reload_outcomes("r1")] == [("w-a", True), ("w-b", False)]
    assert (await store.reload_outcomes("r1"))[1] == refused
    again = refused.model_copy(update={"took": True, "problems": [], "config": "c2"})
    await store.record_reload_outcome(again)
    assert [(o.instance, o.took) for o in await store.reload_outcomes("r1")] == [("w-a", True), ("w-b", True)]
    assert await store.reload_outcomes("r2") == []
