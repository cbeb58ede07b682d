"""The stream monitor's census (GET /metrics' coordinator_streams, _learning, _alarming):
streams as last checked, those in their first day, those with a surge open; drill
streams apart."""

from __future__ import annotations

from datetime import timedelta

from coordinator.clock import ManualClock
from coordinator.config.catalog import Catalog
from coordinator.store import Store

from .test_streams import T0, catalog, complaint, history, load_history, services  # noqa: F401 (fixture)


async def test_the_census_follows_learning_and_alarming_streams(store: Store, catalog: Catalog) -> None:  # noqa: F811
    clock = ManualClock(T0)
    svc = await services(store, catalog, clock)
    assert svc.monitor.census() == (0, 0, 0)
    await load_history(svc, history())
    await svc.pipeline.tick()  # every stream checked, as each tick does
    # outage/hangzhou and outage/*: three days learned, past their first day, calm
    assert svc.monitor.census() == (2, 0, 0)
    await svc.pipeline.receive([(1, complaint("first-in-ningbo", clock.now(), region="ningbo"))])
    assert svc.monitor.census() == (3, 1, 0)  # a new stream: in its first day
    for n in range(40):
        clock.set(T0 + timedelta(seconds=3 * n))
        await svc.pipeline.receive([(1, complaint(f"burst-{n}", clock.now()))])
    assert await store.list_incidents(), "the burst opened no incident"
    streams, learning, alarming = svc.monitor.census()
    assert (streams, learning) == (3, 1) and alarming >= 1
    # a drill's streams are not counted
    await svc.monitor.check("drill:outage/hangzhou", [])
    assert svc.monitor.census()[0] == 3
