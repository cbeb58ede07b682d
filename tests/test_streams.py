"""Complaints to surges to incidents, on both stores: history teaches each stream its
baseline, a burst opens exactly one incident on the complaint that crosses the
threshold, state survives a restart, replayed history opens nothing."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from coordinator.app import build_services, create_app
from coordinator.config.catalog import Catalog, load_catalog
from coordinator.clock import ManualClock
from coordinator.errors import ReplayError, SettingsError
from coordinator.models import IncidentStatus
from coordinator.commands.replay import (
    HttpSink,
    PipelineSink,
    read_complaints,
    replay,
)
from coordinator.config.settings import Settings
from coordinator.store import Store
from coordinator.detection.streams import trigger_minimums

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
SETTINGS = Settings(subscriber_key="k", tick_seconds=0, admin_token=ADMIN_TOKEN)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(FIXTURES / "good")


def history(days: int = 3, per_bucket: float = 1.0, seed: int = 7, region: str = "hangzhou") -> list[dict[str, Any]]:
    """`days` of ordinary outage complaints before T0, Poisson around `per_bucket`."""
    rng = random.Random(seed)
    items = []
    start = T0 - timedelta(days=days)
    for b in range(days * 288):
        # Knuth's Poisson sampler: small rates only
        n, p, limit = 0, rng.random(), pow(2.718281828, -per_bucket)
        while p > limit:
            n += 1
            p *= rng.random()
        for k in range(n):
            at = start + timedelta(minutes=5 * b, seconds=rng.randrange(300))
            items.append(complaint(f"h-{region}-{b}-{k}", at, region=region, subscriber=f"1390000{rng.randrange(10000):04d}"))
    return items


def complaint(cid: str, at: datetime, region: str = "hangzhou", channel: str = "hotline", subscriber: str | None = None) -> dict[str, Any]:
    return {"id": cid, "received_at": at.isoformat(), "channel": channel, "category": "outage",
            "region": region, "subscriber": subscriber or f"138{abs(hash(cid)) % 10**8:08d}", "text": "手机没有信号"}


async def services(store: Store, catalog: Catalog, clock: ManualClock) -> Any:
    return await build_services(SETTINGS, store=store, catalog=catalog, clock=clock)


async def load_history(svc: Any, items: list[dict[str, Any]]) -> None:
    result = await svc.pipeline.receive(list(enumerate(items, start=1)))
    assert result.accepted == len(items) and not result.rejected


async def test_burst_opens_one_incident_on_the_crossing_complaint(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    svc = await services(store, catalog, clock)
    await load_history(svc, history())
    assert await store.list_incidents() == []
    # a burst inside the bucket now filling: complaints arrive one by one
    crossing = None
    for n in range(40):
        clock.set(T0 + timedelta(seconds=3 * n))
        await svc.pipeline.receive([(1, complaint(f"burst-{n}", clock.now()))])
        if crossing is None and await store.list_incidents():
            crossing = n
    assert crossing is not None, "the burst opened no incident"
    assert crossing < 30
    [incident] = await store.list_incidents()
    assert incident.surge is not None and incident.surge.key == "outage/hangzhou"
    assert incident.surge.observed >= 10 and incident.surge.ratio >= 3
    assert incident.roles[0].holder == "p1"
    # the rest of the burst, and the next buckets, attach nothing new: one surge, one incident
    clock.advance(timedelta(minutes=10))
    await svc.pipeline.tick()
    surges = await store.surges(key="outage/hangzhou")
    assert len(surges) == 1
    assert len(await store.list_incidents()) == 1


async def test_flow_from_complaints_to_follow_up(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    svc = await services(store, catalog, clock)
    await load_history(svc, history(seed=11))
    for n in range(30):
        await svc.pipeline.receive([(1, complaint(f"b-{n}", clock.now()))])
    [incident] = await store.list_incidents()
    clock.advance(timedelta(minutes=10))
    await svc.pipeline.tick()
    current = await store.get_incident(incident.id)
    assert current.role("leader").holder == "p2"  # type: ignore[union-attr]  # escalated to the backup
    await svc.pipeline.ack_role(incident.id, "p2")
    await svc.pipeline.resolve(incident.id, "p2", "已恢复")
    clock.advance(timedelta(hours=24))
    assert "follow_up" in [step.key for _, step in await svc.pipeline.tick()]
    assert (await store.get_incident(incident.id)).status == IncidentStatus.closed


async def test_state_survives_a_restart_and_is_not_fed_twice(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    first = await services(store, catalog, clock)
    await load_history(first, history(days=2))
    state, version = await store.load_stream_state("outage/hangzhou")
    assert state is not None and version >= 1
    # a new process: same store, new monitor; nothing new has closed, nothing is re-fed
    second = await services(store, catalog, clock)
    await second.monitor.check("outage/hangzhou", [])
    assert await store.load_stream_state("outage/hangzhou") == (state, version)
    clock.advance(timedelta(minutes=15))
    await second.monitor.check("outage/hangzhou", [])
    _, later = await store.load_stream_state("outage/hangzhou")
    assert later == version + 1


async def test_concurrent_monitors_report_a_surge_once(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    svc = await services(store, catalog, clock)
    await load_history(svc, history(seed=3))
    await store.add_complaints([])  # nothing
    burst = [complaint(f"c-{n}", T0 + timedelta(seconds=n)) for n in range(40)]
    clock.set(T0 + timedelta(seconds=45))
    result = await svc.intake.submit(list(enumerate(burst, start=1)))
    assert result.accepted == 40
    monitors = [(await services(store, catalog, clock)).monitor for _ in range(4)]
    found = await asyncio.gather(*(m.check("outage/hangzhou", []) for m in monitors))
    assert sum(len(f) for f in found) == 1


async def test_replayed_history_is_recorded_but_opens_nothing(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0 + timedelta(days=2))
    svc = await services(store, catalog, clock)
    items = history(days=3)
    # an old burst, a day before the clock
    items += [complaint(f"old-{n}", T0 - timedelta(days=1) + timedelta(seconds=5 * n)) for n in range(60)]
    for item in items:
        item["_at"] = datetime.fromisoformat(item["received_at"])
    stats = await replay(sorted(items, key=lambda i: i["_at"]), PipelineSink(svc.intake.submit), clock=clock)
    assert stats.accepted == len(items)
    await svc.pipeline.catch_up()
    assert await store.list_incidents() == []
    old = await store.surges(key="outage/hangzhou")
    assert old and all(s.onset < T0 for s in old)


def test_trigger_minimums() -> None:
    triggers = [(["outage"], None, 10, 3.0), (["outage"], ["hangzhou"], 5, 4.0), (["billing"], None, 50, 2.0)]
    assert trigger_minimums(triggers, "outage/hangzhou") == (5.0, 3.0)
    assert trigger_minimums(triggers, "outage/ningbo") == (10.0, 3.0)
    assert trigger_minimums(triggers, "outage/*") == (10.0, 3.0)
    assert trigger_minimums(triggers, "spam/hangzhou") == (0.0, 1.0)


async def test_streams_api(aiohttp_client: Any, store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    client: TestClient = await aiohttp_client(create_app(SETTINGS, clock=clock, store=store, catalog=catalog),
                                              headers=ADMIN_HEADERS)
    body = "\n".join(json.dumps(c) for c in history(days=2)).encode()
    resp = await client.post("/api/complaints", data=body, headers={"Content-Type": "application/x-ndjson"})
    assert resp.status == 200
    before = {s["stream"]: s for s in (await (await client.get("/api/streams")).json())["streams"]}
    again = [complaint(f"r-{n}", T0 + timedelta(seconds=n), subscriber="13912345678") for n in range(3)]
    await client.post("/api/complaints", json=again)
    streams = {s["stream"]: s for s in (await (await client.get("/api/streams")).json())["streams"]}
    assert set(streams) == {"outage/hangzhou", "outage/*"}
    hz = streams["outage/hangzhou"]
    assert hz["current_count"] == 3
    assert hz["repeats_24h"] == before["outage/hangzhou"]["repeats_24h"] + 2  # the 2nd and 3rd of one subscriber
    assert 0 < hz["baseline"] < 5 and 0 <= hz["score"] <= 1 and hz["surge"] is None
    assert hz["repeat_share"] == pytest.approx(hz["repeats_24h"] / hz["complaints_24h"], abs=1e-4)


@pytest.mark.parametrize(("grace_seconds", "late"), [(600.0, 0), (60.0, 40)])
async def test_a_burst_uploaded_late_is_detected_within_the_grace_time(
    store: Store, catalog: Catalog, grace_seconds: float, late: int
) -> None:
    """A shop uploads a burst stamped in a bucket that closed four minutes ago: with the
    default grace of ten minutes it is still detected; with one minute that bucket was
    already fed, so the burst is counted, reported as late, and detected on by nothing."""
    clock = ManualClock(T0)
    svc = await build_services(replace(SETTINGS, detection_grace_seconds=grace_seconds),
                               store=store, catalog=catalog, clock=clock)
    await load_history(svc, history(seed=5))
    clock.set(T0 + timedelta(minutes=9))
    await svc.pipeline.catch_up()  # the tick: every stream fed up to its grace time
    fed, _ = await store.load_stream_state("outage/hangzhou")
    burst = [complaint(f"shop-{n}", T0 + timedelta(minutes=1, seconds=n), channel="shop") for n in range(40)]
    result = await svc.pipeline.receive(list(enumerate(burst, start=1)))
    assert result.accepted == 40 and result.late == late and result.as_json()["late"] == late
    counts = await store.bucket_counts("outage/hangzhou", T0, T0 + timedelta(minutes=5))
    assert counts[int(T0.timestamp())] >= 40  # counted either way
    incidents = await store.list_incidents()
    if late:
        assert incidents == []
        assert (await store.load_stream_state("outage/hangzhou"))[0] == fed  # not fed twice
    else:
        [incident] = incidents
        assert incident.surge is not None and incident.surge.onset <= T0 + timedelta(minutes=1)


async def test_a_burst_in_a_closed_bucket_is_judged_on_that_bucket_not_the_empty_one_filling(
    store: Store, catalog: Catalog
) -> None:
    """A web batch stamps 22 complaints in the bucket that closed four minutes ago, over a
    usual 5: x4, above the playbook's x3. The bucket now filling has nothing yet. The
    surge was reported with the filling bucket's expected count in its total (22 against
    5 + 5, x2.2), so the playbook's trigger refused it and no incident ever opened."""
    clock = ManualClock(T0)
    svc = await build_services(SETTINGS, store=store, catalog=catalog, clock=clock)
    await load_history(svc, history(per_bucket=5.0, seed=11))
    clock.set(T0 + timedelta(minutes=9))
    await svc.pipeline.catch_up()
    burst = [complaint(f"crm-{n}", T0 + timedelta(minutes=1, seconds=n), channel="web") for n in range(22)]
    assert (await svc.pipeline.receive(list(enumerate(burst, start=1)))).accepted == 22
    [incident] = await store.list_incidents()
    assert incident.surge is not None and incident.surge.ratio >= 3 and incident.surge.observed >= 22


async def test_history_replayed_over_http_reports_what_came_too_late(
    aiohttp_client: Any, store: Store, catalog: Catalog
) -> None:
    """Over HTTP, history reaches a running service batch by batch: the first batch
    teaches a new stream's detector everything stored so far, and the later batches,
    stamped in buckets already fed, come back counted as late."""
    clock = ManualClock(T0)
    client: TestClient = await aiohttp_client(create_app(SETTINGS, clock=clock, store=store, catalog=catalog))
    items = history(days=2)
    for item in items:
        item["_at"] = datetime.fromisoformat(item["received_at"])
    items.sort(key=lambda i: i["_at"])
    sink = HttpSink(client.session, str(client.make_url("/")), ADMIN_TOKEN)
    stats = await replay(items, sink, clock=clock, batch_size=200)
    assert stats.accepted == len(items) > 400 and stats.rejected == 0
    # Only the complaints of the ten minutes before T0 were not fed yet.
    recent = sum(1 for i in items[200:] if i["_at"] >= T0 - timedelta(minutes=15))
    assert len(items) - 200 - recent <= stats.late <= len(items) - 200


def test_detection_grace_setting() -> None:
    assert Settings.from_env({}).detection_grace_seconds == 600.0
    assert Settings.from_env({"COORDINATOR_DETECTION_GRACE_SECONDS": "0"}).detection_grace_seconds == 0.0
    for bad in ("-1", "3600"):
        with pytest.raises(SettingsError, match="COORDINATOR_DETECTION_GRACE_SECONDS must be between 0 and 1800"):
            Settings.from_env({"COORDINATOR_DETECTION_GRACE_SECONDS": bad})


def test_read_complaints_csv_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "c.csv"
    good.write_text("id,received_at,channel,category,region,text\n"
                    "b,2026-11-24T10:05:00+08:00,app,outage,hangzhou,二\n"
                    "a,2026-11-24T10:00:00+08:00,hotline,outage,hangzhou,一\n", encoding="utf-8")
    items = read_complaints(good)
    assert [i["id"] for i in items] == ["a", "b"] and "subscriber" not in items[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,received_at\nx,yesterday\n")
    with pytest.raises(ReplayError, match=r"bad.csv:2: received_at 'yesterday' is not an ISO-8601 time"):
        read_complaints(bad)
    nd = tmp_path / "x.ndjson"
    nd.write_text('{"id": "a", "received_at": "2026-11-24T10:00:00+08:00"}\n{oops\n')
    with pytest.raises(ReplayError, match=r"x.ndjson:2: not JSON"):
        read_complaints(nd)


async def test_replay_paces_by_speed_and_stamps_live_times() -> None:
    clock = ManualClock(T0)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    sent: list[list[dict[str, Any]]] = []

    class Recorder:
        async def send(self, batch: list[dict[str, Any]]) -> dict[str, int]:
            sent.append(list(batch))
            return {"accepted": len(batch), "duplicate": 0, "rejected": 0, "late": 0}

    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    items = [{"id": str(i), "received_at": "x", "_at": base + timedelta(minutes=i)} for i in range(5)]
    stats = await replay(items, Recorder(), clock=clock, speed=60, live=True, sleep=sleep)
    assert stats.sent == stats.accepted == 5
    assert [len(b) for b in sent] == [1, 1, 1, 1, 1]
    assert slept == [1.0, 1.0, 1.0, 1.0]  # a minute of complaints per second
    assert [b[0]["received_at"] for b in sent] == [(T0 + timedelta(seconds=i)).isoformat() for i in range(5)]


async def test_an_unreadable_saved_state_is_relearned_from_the_counts(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    svc = await services(store, catalog, clock)
    await load_history(svc, history(days=2))
    state, version = await store.load_stream_state("outage/hangzhou")
    assert state is not None
    assert await store.save_stream_state("outage/hangzhou", {"version": 0, "junk": True}, version + 1)
    fresh = await services(store, catalog, clock)  # a new process reads the store
    clock.advance(timedelta(minutes=15))
    await fresh.monitor.check("outage/hangzhou", [])
    relearned, _ = await store.load_stream_state("outage/hangzhou")
    assert relearned is not None and relearned["version"] == state["version"]
    assert relearned["state"]["last_ts"] > state["state"]["last_ts"]
