"""The drill side of the store contract, on SQLite and on a real Redis: runs are
created once, saved by revision, listed newest first; the schedule cursor and the
scheduler lease each let exactly one instance through."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from coordinator.errors import Conflict
from coordinator.models import DrillRun, DrillRunStatus
from coordinator.store import Store

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)


def run(run_id: str, drill_id: str = "weekly-broadband", at: datetime = T0) -> DrillRun:
    return DrillRun(id=run_id, drill_id=drill_id, title="演练", how="schedule", scheduled_for=at, started_at=at)


async def test_a_run_is_created_once_and_saved_by_revision(store: Store) -> None:
    assert await store.create_drill_run(run("r1"))
    assert not await store.create_drill_run(run("r1").model_copy(update={"title": "again"}))
    stored = await store.get_drill_run("r1")
    assert stored is not None and stored.title == "演练" and stored.revision == 0
    done = stored.model_copy(update={"status": DrillRunStatus.finished, "revision": 1, "incident_id": "DRL-1"})
    await store.save_drill_run(done)
    with pytest.raises(Conflict):
        await store.save_drill_run(stored.model_copy(update={"revision": 1}))  # based on a stale copy
    again = await store.get_drill_run("r1")
    assert again is not None and again.status == DrillRunStatus.finished and again.incident_id == "DRL-1"
    assert await store.get_drill_run("nope") is None


async def test_runs_newest_first_per_drill_and_all(store: Store) -> None:
    for i in range(3):
        await store.create_drill_run(run(f"w{i}", at=T0 + timedelta(days=7 * i)))
    await store.create_drill_run(run("m0", drill_id="monthly-billing", at=T0 + timedelta(days=1)))
    assert [r.id for r in await store.drill_runs("weekly-broadband")] == ["w2", "w1", "w0"]
    assert [r.id for r in await store.drill_runs()] == ["w2", "w1", "m0", "w0"]
    assert await store.drill_runs("other") == []


async def test_cursor_moves_for_one_of_many(store: Store) -> None:
    assert await store.drill_cursor("d") is None
    first = T0 + timedelta(hours=1)
    results = await asyncio.gather(*(store.move_drill_cursor("d", None, first) for _ in range(10)))
    assert results.count(True) == 1
    assert await store.drill_cursor("d") == first
    nxt = first + timedelta(days=7)
    results = await asyncio.gather(*(store.move_drill_cursor("d", first, nxt) for _ in range(10)))
    assert results.count(True) == 1
    assert not await store.move_drill_cursor("d", first, nxt + timedelta(days=7))  # stale expectation
    assert await store.drill_cursor("d") == nxt


async def test_lease_is_held_renewed_and_taken_over_when_lapsed(store: Store) -> None:
    assert await store.acquire_lease("drills", "a", T0, 30)
    assert not await store.acquire_lease("drills", "b", T0 + timedelta(seconds=10), 30)
    assert await store.acquire_lease("drills", "a", T0 + timedelta(seconds=20), 30)  # renewal
    assert not await store.acquire_lease("drills", "b", T0 + timedelta(seconds=45), 30)
    assert await store.acquire_lease("drills", "b", T0 + timedelta(seconds=51), 30)  # a's lapsed at 50
    assert not await store.acquire_lease("drills", "a", T0 + timedelta(seconds=60), 30)
    assert await store.acquire_lease("other", "a", T0, 30)
