"""The alarm side of the store contract, on SQLite and on a real Redis: an alarm's state
is created once, saved by revision (of writers racing on one revision exactly one wins),
kept per source and dedup key, and listed per incident it names (an alarm that moves to
another incident leaves the first one's list)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from coordinator.alarms.decisions import AlarmState
from coordinator.store import Store

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)


def state(key: str, incident: str | None = "INC-1", revision: int = 1, source: str = "alertmanager",
          at: datetime = T0) -> AlarmState:
    return AlarmState(source=source, key=key, revision=revision, name="BaseStationDown",
                      labels="alertname=BaseStationDown", incident_id=incident, fired_at=at)


async def test_a_state_is_created_once_and_saved_by_revision(store: Store) -> None:
    assert await store.get_alarm("alertmanager", "f1") is None
    assert await store.save_alarm(state("f1"))
    assert not await store.save_alarm(state("f1", incident="INC-2"))  # revision 1 exists already
    stored = await store.get_alarm("alertmanager", "f1")
    assert stored == state("f1")
    cleared = stored.model_copy(update={"revision": 2, "firing": False, "cleared_at": T0 + timedelta(minutes=5)})
    assert await store.save_alarm(cleared)
    assert not await store.save_alarm(stored.model_copy(update={"revision": 2, "acknowledged": True}))  # stale
    assert not await store.save_alarm(cleared.model_copy(update={"revision": 4}))  # skips a revision
    assert await store.get_alarm("alertmanager", "f1") == cleared


async def test_one_of_many_racing_writers_wins(store: Store) -> None:
    results = await asyncio.gather(*(store.save_alarm(state("race", incident=f"INC-{i}")) for i in range(10)))
    assert results.count(True) == 1
    winner = await store.get_alarm("alertmanager", "race")
    assert winner is not None and winner.incident_id == f"INC-{results.index(True)}"
    nxt = winner.model_copy(update={"revision": 2})
    results = await asyncio.gather(*(store.save_alarm(nxt.model_copy(update={"name": str(i)})) for i in range(10)))
    assert results.count(True) == 1


async def test_states_are_per_source_and_key(store: Store) -> None:
    assert await store.save_alarm(state("k", source="alertmanager"))
    assert await store.save_alarm(state("k", source="pagerduty", incident="INC-9"))
    am = await store.get_alarm("alertmanager", "k")
    pd = await store.get_alarm("pagerduty", "k")
    assert am is not None and pd is not None and (am.incident_id, pd.incident_id) == ("INC-1", "INC-9")
    assert await store.get_alarm("alertmanager", "K") is None


async def test_alarms_are_listed_per_incident_and_follow_a_move(store: Store) -> None:
    assert await store.save_alarm(state("b", at=T0 + timedelta(minutes=1)))
    assert await store.save_alarm(state("a", at=T0))
    assert await store.save_alarm(state("c", incident="INC-2"))
    assert await store.save_alarm(state("d", incident=None))
    assert [a.key for a in await store.incident_alarms("INC-1")] == ["a", "b"]
    assert [a.key for a in await store.incident_alarms("INC-2")] == ["c"]
    a = await store.get_alarm("alertmanager", "a")
    assert a is not None
    # A new episode of `a` joins another incident: it leaves INC-1's list.
    assert await store.save_alarm(a.model_copy(update={"revision": 2, "episode": 2, "incident_id": "INC-3"}))
    assert [x.key for x in await store.incident_alarms("INC-1")] == ["b"]
    assert [x.key for x in await store.incident_alarms("INC-3")] == ["a"]
    assert await store.incident_alarms("INC-404") == []
