"""Network alarms through the service's own pipeline, on SQLite and on a real Redis: a
firing opens the incident or joins the one open on its key (an alarm and a complaint
surge for the same category and region make one incident, whichever comes first), a
repeat attaches once (also from a second instance, and after a restart), clearing is
recorded and resolves only when the rule says so and every alarm on the incident has
cleared, and a drill never crosses with a real alarm."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis

from coordinator import metrics
from coordinator.alarms.intake import AlarmIntake
from coordinator.alarms.decisions import Alarm, AlarmAction, Outcome
from coordinator.app import build_services
from coordinator.clock import ManualClock
from coordinator.config.catalog import Catalog, load_catalog
from coordinator.config.settings import Settings
from coordinator.models import IncidentStatus, ScriptKind, Surge
from coordinator.pipeline import Pipeline
from coordinator.store import Store
from coordinator.store.redis import RedisStore
from coordinator.store.sqlite import SqliteStore

from .test_alarms import config_with

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
RULES = """\
alerts:
  - match: {alertname: BaseStationDown}
    playbook: outage
    region: {label: city, map: {HZ: hangzhou, NB: ningbo}}
    params:
      cause: "{{ labels.site }}基站退服"
    resolve_when_cleared: true
  - match: {alertname: PowerLoss}
    playbook: outage
    region: hangzhou
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return load_catalog(config_with(tmp_path_factory.mktemp("flow"), RULES))


class Instance:
    """One coordinator instance's parts over a shared store."""

    def __init__(self, pipeline: Pipeline, intake: AlarmIntake) -> None:
        self.pipeline, self.intake = pipeline, intake


async def instance(store: Store, catalog: Catalog, clock: ManualClock, worker: str = "w1") -> Instance:
    services = await build_services(Settings(subscriber_key="k", tick_seconds=0), store=store, catalog=catalog,
                                    clock=clock, worker=worker)
    return Instance(services.pipeline, AlarmIntake(store=store, pipeline=services.pipeline,
                                                   rules=lambda: catalog.alerts, clock=clock))


def fired(key: str = "fp1", city: str = "HZ", name: str = "BaseStationDown",
          action: AlarmAction = AlarmAction.firing, source: str = "alertmanager") -> Alarm:
    return Alarm(source=source, key=key, action=action, name=name,
                 labels={"alertname": name, "city": city, "site": "西湖3号"}, summary="基站退服")


def surge(key: str = "outage/hangzhou") -> Surge:
    category, region = key.split("/")
    return Surge(key=key, category=category, region=region, onset=T0 - timedelta(minutes=15), detected_at=T0,
                 observed=40, expected=6.0, ratio=6.5, score=0.99)


async def events(store: Store, incident_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in await store.timeline(incident_id) if e.kind == kind]


async def test_an_alarm_opens_the_incident_and_a_later_surge_joins_it(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    one = await instance(store, catalog, clock)
    handled = await one.intake.handle(fired())
    assert handled.outcome == Outcome.opened and handled.incident_id is not None
    incident = await store.get_incident(handled.incident_id)
    assert (incident.playbook, incident.region, incident.surge_key, incident.opened_by, incident.drill) == (
        "outage", "hangzhou", "outage/hangzhou", "alertmanager", False)
    assert incident.params["cause"] == "西湖3号基站退服"
    [alarm] = await events(store, incident.id, "alarm")
    assert alarm == {"source": "alertmanager", "name": "BaseStationDown", "dedup_key": "fp1",
                     "labels": "alertname=BaseStationDown, city=HZ, site=西湖3号", "summary": "基站退服"}
    # the script went out as the incident opened (auto approval), as for a surge
    assert [v.kind for v in (await store.get_incident(incident.id)).scripts] == [ScriptKind.script]
    clock.advance(timedelta(minutes=3))
    joined = await one.pipeline.on_surge(surge())
    assert joined is not None and joined.id == incident.id and joined.surge_count == 1
    assert len(await store.list_incidents(open_only=True)) == 1


async def test_a_surge_opens_the_incident_and_a_later_alarm_joins_it(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    one = await instance(store, catalog, clock)
    opened = await one.pipeline.on_surge(surge())
    assert opened is not None
    clock.advance(timedelta(minutes=1))
    handled = await one.intake.handle(fired())
    assert (handled.outcome, handled.incident_id) == (Outcome.attached, opened.id)
    assert len(await events(store, opened.id, "alarm")) == 1
    assert len(await store.list_incidents()) == 1
    # another region's alarm is another incident
    other = await one.intake.handle(fired("fp2", city="NB"))
    assert other.outcome == Outcome.opened and other.incident_id != opened.id



async def test_a_regional_alarm_joins_the_category_wide_incident_open_on_its_event(store: Store,
                                                                                    catalog: Catalog) -> None:
    clock = ManualClock(T0)
    one = await instance(store, catalog, clock)
    wide = await one.pipeline.on_surge(surge("outage/*"))
    assert wide is not None and wide.surge_key == "outage/*"
    clock.advance(timedelta(minutes=1))
    handled = await one.intake.handle(fired())
    assert (handled.outcome, handled.incident_id) == (Outcome.attached, wide.id)
    assert len(await store.list_incidents(open_only=True)) == 1

async def test_a_repeated_firing_attaches_once(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    one = await instance(store, catalog, clock)
    first = await one.intake.handle(fired())
    for _ in range(3):
        clock.advance(timedelta(minutes=5))
        again = await one.intake.handle(fired())
        assert (again.outcome, again.incident_id) == (Outcome.repeat, first.incident_id)
    assert first.incident_id is not None
    assert len(await events(store, first.incident_id, "alarm")) == 1
    assert len(await store.list_incidents()) == 1


async def test_two_instances_on_one_store_attach_a_firing_once(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    one, two = await instance(store, catalog, clock, "w1"), await instance(store, catalog, clock, "w2")
    results = await asyncio.gather(*(i.intake.handle(fired()) for i in (one, two, one, two)))
    assert sorted(r.outcome for r in results).count(Outcome.repeat) == 3, results
    incident_ids = {r.incident_id for r in results}
    assert len(incident_ids) == 1 and None not in incident_ids
    assert len(await store.list_incidents()) == 1
    assert len(await events(store, incident_ids.pop() or "", "alarm")) == 1


async def reopen(kind: str, tmp_path: Path, request: pytest.FixtureRequest, prefix: str) -> Store:
    if kind == "sqlite":
        return await SqliteStore.open(tmp_path / "restart.db", 300)
    return await RedisStore.open(request.getfixturevalue("redis_url"), 300, prefix=prefix)


async def test_the_dedup_state_survives_a_restart(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                  catalog: Catalog) -> None:
    clock = ManualClock(T0)
    prefix = f"alarm-restart-{uuid.uuid4().hex[:8]}:"
    store = await reopen(store_kind, tmp_path, request, prefix)
    first = await (await instance(store, catalog, clock)).intake.handle(fired())
    await store.close()
    store = await reopen(store_kind, tmp_path, request, prefix)  # a new process on the same store
    try:
        again = await (await instance(store, catalog, clock, "w9")).intake.handle(fired())
        assert (again.outcome, again.incident_id) == (Outcome.repeat, first.incident_id)
        assert len(await events(store, first.incident_id or "", "alarm")) == 1
    finally:
        await store.close()
        if store_kind == "redis":
            cleanup = redis.Redis.from_url(request.getfixturevalue("redis_url"))
            for key in cleanup.scan_iter(match=f"{prefix}*", count=1000):
                cleanup.delete(key)


async def test_an_alarm_and_a_surge_at_the_same_moment_make_one_incident(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    one, two = await instance(store, catalog, clock, "w1"), await instance(store, catalog, clock, "w2")
    surged, handled = await asyncio.gather(one.pipeline.on_surge(surge()), two.intake.handle(fired()))
    assert surged is not None and handled.incident_id == surged.id
    assert handled.outcome in (Outcome.opened, Outcome.attached)
    assert len(await store.list_incidents()) == 1


async def test_cleared_alarms_resolve_the_incident_when_all_have_cleared(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    one = await instance(store, catalog, clock)
    a = await one.intake.handle(fired("a"))
    b = await one.intake.handle(fired("b"))
    assert b.outcome == Outcome.attached and a.incident_id == b.incident_id and a.incident_id is not None
    clock.advance(timedelta(minutes=20))
    cleared = await one.intake.handle(fired("a", action=AlarmAction.resolved))
    assert cleared.outcome == Outcome.cleared
    assert (await store.get_incident(a.incident_id)).is_open  # b still firing
    assert (await one.intake.handle(fired("a", action=AlarmAction.resolved))).outcome == Outcome.not_firing
    done = await one.intake.handle(fired("b", action=AlarmAction.resolved))
    assert (done.outcome, done.incident_id) == (Outcome.resolved, a.incident_id)
    incident = await store.get_incident(a.incident_id)
    assert incident.status == IncidentStatus.resolved
    assert [e["dedup_key"] for e in await events(store, incident.id, "alarm_cleared")] == ["a", "b"]
    assert ScriptKind.stand_down in [v.kind for v in (await store.get_incident(incident.id)).scripts]
    # it fires again: a new episode, a new incident (the old one is resolved)
    clock.advance(timedelta(minutes=5))
    again = await one.intake.handle(fired("a"))
    assert again.outcome == Outcome.opened and again.incident_id != incident.id
    [event] = await events(store, again.incident_id or "", "alarm")
    assert event["episode"] == 2


async def test_a_clear_resolves_nothing_unless_the_rule_says_so(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    one = await instance(store, catalog, clock)
    opened = await one.intake.handle(fired("p", name="PowerLoss"))
    assert opened.outcome == Outcome.opened
    assert (await one.intake.handle(fired("p", name="PowerLoss", action=AlarmAction.resolved))).outcome == (
        Outcome.cleared)
    assert (await store.get_incident(opened.incident_id or "")).is_open
    # fired again while the incident is still open: attached again, once
    again = await one.intake.handle(fired("p", name="PowerLoss"))
    assert (again.outcome, again.incident_id) == (Outcome.attached, opened.incident_id)
    assert len(await events(store, opened.incident_id or "", "alarm")) == 2


async def test_acknowledgements_are_recorded_once(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    one = await instance(store, catalog, clock)
    opened = await one.intake.handle(fired("pd-1", source="pagerduty"))
    ack = fired("pd-1", source="pagerduty", action=AlarmAction.acknowledged)
    assert (await one.intake.handle(ack)).outcome == Outcome.acknowledged
    assert (await one.intake.handle(ack)).outcome == Outcome.repeat
    assert (await one.intake.handle(fired("nope", action=AlarmAction.acknowledged))).outcome == Outcome.not_firing
    assert len(await events(store, opened.incident_id or "", "alarm_acknowledged")) == 1


async def test_a_drill_never_crosses_with_a_real_alarm(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    one = await instance(store, catalog, clock)
    drill = await one.pipeline.trigger("outage", region="hangzhou", drill=True, actor="trainer")
    assert drill.incident.drill and drill.incident.surge_key == "drill:outage/hangzhou"
    handled = await one.intake.handle(fired())
    assert handled.outcome == Outcome.opened and handled.incident_id != drill.incident.id
    real = await store.get_incident(handled.incident_id or "")
    assert not real.drill
    assert await events(store, drill.incident.id, "alarm") == []
    # and a drill opened while the real incident is open stays a drill of its own
    later = await one.pipeline.trigger("outage", region="hangzhou", drill=True, actor="trainer")
    assert later.incident.id == drill.incident.id


async def test_unmapped_and_unroutable_alarms_open_nothing(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    one = await instance(store, catalog, clock)
    before = metrics.ALARMS.labels("alertmanager", "unmapped")._value.get()
    handled = await one.intake.handle(fired(name="DiskFull"))
    assert handled.outcome == Outcome.unmapped and handled.incident_id is None
    assert metrics.ALARMS.labels("alertmanager", "unmapped")._value.get() == before + 1
    failed = await one.intake.handle(fired(city="SH"))  # no region for this city, no default
    assert failed.outcome == Outcome.failed and "city" in failed.reason
    assert await store.list_incidents() == []
    assert await store.get_alarm("alertmanager", "fp1") is None
    # a clear for an alarm never seen is noted, nothing else
    assert (await one.intake.handle(fired("zz", action=AlarmAction.resolved))).outcome == Outcome.not_firing
