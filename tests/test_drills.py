"""Drills on the shipped config, on both stores: the cron schedule (exactly once across
instances, misfires caught up or recorded), the scenarios through the real path
(synthetic complaints → detection → drill incident → narrowed audience → marked
messages → end), and the separation from real incidents."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from coordinator.app import build_services
from coordinator.config.catalog import Catalog
from coordinator.clock import ManualClock
from coordinator.sampling import poisson
from coordinator.errors import DrillRefused
from coordinator.drills import SCHEDULER_LEASE, due_firings, cron, next_firings, surge_plan
from coordinator.models import DrillRun, DrillRunStatus, IncidentStatus
from coordinator.config.settings import Settings
from coordinator.store import Store
from coordinator.web.state import Services

ROOT = Path(__file__).resolve().parents[1]
# Tuesday 2026-11-24 20:00 in Shanghai; weekly-broadband fires on Wednesdays at 10:00 there.
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
WED_10 = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
SETTINGS = Settings(subscriber_key="k", tick_seconds=0)



async def services(store: Store, catalog: Catalog, clock: ManualClock, *, sandbox: bool = True) -> Services:
    svc = await build_services(SETTINGS, store=store, catalog=catalog, clock=clock)
    svc.drills.sandbox_channels = sandbox
    return svc


def history(days: int, region: str, per_bucket: float, seed: int = 3) -> list[tuple[int, dict[str, Any]]]:
    """Ordinary broadband complaints for `days` before T0."""
    rng = random.Random(seed)
    items: list[tuple[int, dict[str, Any]]] = []
    start = T0 - timedelta(days=days)
    for b in range(days * 288):
        for k in range(poisson(rng, per_bucket)):
            at = start + timedelta(minutes=5 * b, seconds=rng.randrange(300))
            items.append((len(items) + 1, {"id": f"h-{b}-{k}", "received_at": at.isoformat(), "channel": "hotline",
                                           "category": "broadband", "region": region, "text": "宽带断网"}))
    return items


async def learn(svc: Services, region: str = "ningbo", per_bucket: float = 1.5) -> None:
    items = history(3, region, per_bucket)
    for i in range(0, len(items), 2000):
        await svc.intake.submit(items[i:i + 2000])
    await svc.pipeline.catch_up()


# --- the schedule ---------------------------------------------------------------------


def test_firings_follow_the_drills_time_zone(catalog: Catalog) -> None:
    weekly = catalog.drills["weekly-broadband"]
    assert next_firings(weekly, T0, 2) == [WED_10, WED_10 + timedelta(days=7)]
    monthly = catalog.drills["monthly-billing"]  # first Monday of the month, 14:30 Shanghai
    assert next_firings(monthly, T0, 1) == [datetime(2026, 12, 7, 6, 30, tzinfo=timezone.utc)]
    fired, following = due_firings(cron(weekly), WED_10, WED_10 + timedelta(days=15))
    assert fired == [WED_10, WED_10 + timedelta(days=7), WED_10 + timedelta(days=14)]
    assert following == WED_10 + timedelta(days=21)


async def test_a_scheduled_drill_fires_once_on_time(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    svc = await services(store, catalog, clock)
    assert await svc.drills.tick() == []  # first sight: the cursor is set, nothing fires
    assert await store.drill_cursor("weekly-broadband") == WED_10
    clock.set(WED_10 - timedelta(seconds=1))
    assert await svc.drills.fire_due() == []
    clock.set(WED_10 + timedelta(seconds=20))
    started = await svc.drills.fire_due()
    assert [r.id for r in started] == ["weekly-broadband-20261125-1000"]
    assert started[0].how == "schedule" and started[0].scheduled_for == WED_10
    assert await svc.drills.fire_due() == []
    assert await store.drill_cursor("weekly-broadband") == WED_10 + timedelta(days=7)


async def test_two_instances_fire_a_drill_exactly_once(store: Store, other_store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    a = await services(store, catalog, clock)
    b = await services(other_store, catalog, clock)
    await a.drills.tick()
    clock.set(WED_10 + timedelta(seconds=5))
    # Even without the lease (both call fire_due), the cursor lets one through.
    import asyncio
    results = await asyncio.gather(a.drills.fire_due(), b.drills.fire_due(), a.drills.fire_due())
    assert sum(len(r) for r in results) == 1
    runs = [r for r in await store.drill_runs("weekly-broadband")]
    assert len(runs) == 1 and runs[0].status == DrillRunStatus.running


async def test_only_the_lease_holder_schedules(store: Store, other_store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    a = await services(store, catalog, clock)
    b = await services(other_store, catalog, clock)
    await a.drills.tick()
    clock.set(WED_10 - timedelta(seconds=10))
    await a.drills.tick()  # a holds the scheduler lease now (renewed on every tick)
    clock.set(WED_10 + timedelta(seconds=5))
    assert await b.drills.tick() == []  # b does not hold it: it does not look
    assert await store.drill_runs("weekly-broadband") == []
    clock.advance(timedelta(seconds=a.drills.lease_seconds))  # a is gone; its lease lapses
    started = await b.drills.tick()
    assert [r.drill_id for r in started] == ["weekly-broadband"]
    assert not await store.acquire_lease(SCHEDULER_LEASE, a.drills.owner, clock.now(), 1)


@pytest.mark.parametrize("down_until, how, missed", [
    (WED_10 + timedelta(minutes=5), "catch-up", 0),  # within the grace time: runs once at start-up
    (WED_10 + timedelta(hours=1), None, 1),  # too late: recorded as missed
    (WED_10 + timedelta(days=14, hours=1), None, 3),  # three weeks down: three missed
])
async def test_misfires(store: Store, catalog: Catalog, down_until: datetime, how: str | None, missed: int) -> None:
    clock = ManualClock(T0)
    svc = await services(store, catalog, clock)
    await svc.drills.fire_due()
    clock.set(down_until)
    restarted = await services(store, catalog, clock)  # a new instance, same store
    started = await restarted.drills.fire_due()
    assert [r.how for r in started] == ([how] if how else [])
    runs = await store.drill_runs("weekly-broadband")
    assert sum(r.status == DrillRunStatus.missed for r in runs) == missed
    assert all(r.end_reason for r in runs if r.status == DrillRunStatus.missed)


async def test_sandbox_drill_refused_on_a_real_service(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    svc = await services(store, catalog, clock, sandbox=False)
    with pytest.raises(DrillRefused, match="asks for sandbox channels"):
        await svc.drills.start("weekly-broadband")
    await svc.drills.fire_due()
    clock.set(WED_10)
    assert await svc.drills.fire_due() == []
    [failed] = await store.drill_runs("weekly-broadband")
    assert failed.status == DrillRunStatus.failed and "sandbox" in (failed.end_reason or "")
    assert await store.list_incidents() == []


# --- the scenarios ----------------------------------------------------------------------


def test_surge_plan_is_reproducible_and_shaped(catalog: Catalog) -> None:
    scenario = catalog.drills["weekly-broadband"].scenario
    run = DrillRun(id="r", drill_id="weekly-broadband", title="t", how="manual", started_at=T0)
    plan = surge_plan(run, scenario, 2.0, 300)  # type: ignore[arg-type]
    assert plan == surge_plan(run, scenario, 2.0, 300)  # type: ignore[arg-type]
    assert all(T0 <= a.at < T0 + timedelta(minutes=30) for a in plan)
    assert 60 <= len(plan) <= 140  # 6 buckets x 2 x 8 = 96 expected
    ramp = surge_plan(run, scenario.model_copy(update={"shape": "ramp"}), 2.0, 300)  # type: ignore[union-attr]
    early = sum(1 for a in ramp if a.at < T0 + timedelta(minutes=15))
    assert early < len(ramp) - early


async def drive(svc: Services, clock: ManualClock, minutes: int, step: int = 30) -> None:
    for _ in range(minutes * 60 // step):
        clock.advance(timedelta(seconds=step))
        await svc.pipeline.tick()
        await svc.drills.tick()


async def drive_until_open(svc: Services, clock: ManualClock, run_id: str) -> DrillRun | None:
    """Half-minute steps until the run has its incident (at most the surge's 30 minutes)."""
    for _ in range(60):
        run = await svc.store.get_drill_run(run_id)
        if run is not None and run.incident_id is not None:
            return run
        await drive(svc, clock, 1)
    return await svc.store.get_drill_run(run_id)


async def test_surge_drill_is_detected_and_runs_the_real_path(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    svc = await services(store, catalog, clock)
    await learn(svc)
    real_before = await store.bucket_counts("broadband/ningbo", T0 - timedelta(days=4), T0 + timedelta(days=1))
    run = await svc.drills.start("weekly-broadband")
    assert run is not None and run.how == "manual"
    # ~10 complaints a bucket against ~1.3: the playbook wants 20 and x3, so two or three buckets.
    run = await drive_until_open(svc, clock, run.id)
    assert run is not None and run.fed > 0 and run.incident_id is not None and run.detected is True
    incident = await store.get_incident(run.incident_id)
    assert incident.drill and incident.id.startswith("DRL-") and incident.drill_run == run.id
    assert incident.surge is not None and incident.surge_key == "drill:broadband/ningbo"
    assert incident.params["cause"] == "汇聚机房供电中断"  # the scenario's parameters
    # Only ningbo's hotline agents (the drill's audience), every text marked.
    people = catalog.contacts.people
    deliveries = await store.deliveries(incident.id)
    script = [d for d in deliveries if d.key.channel in ("sms", "email")]
    assert script and all("hotline" in people[d.key.person_id].teams and people[d.key.person_id].region == "ningbo"
                          for d in script)
    notices = [d for d in deliveries if d.text is not None]  # to the role holders
    assert notices and all(d.text.startswith("【演练】") for d in notices)  # type: ignore[union-attr]
    v1 = incident.script(1)
    assert v1 is not None and v1.approved
    for text in (v1.sms, v1.email_subject, v1.email_text):
        assert text.lstrip().startswith("【演练】")
    # The real streams saw nothing of it, and nothing real opened.
    assert await store.bucket_counts("broadband/ningbo", T0 - timedelta(days=4), T0 + timedelta(days=1)) == real_before
    assert await store.list_incidents(drill=False) == []
    # Nobody acknowledges: the run ends when its time is up, and the stand-down goes out.
    await drive(svc, clock, 60, step=60)
    run = await store.get_drill_run(run.id)
    assert run is not None and run.status == DrillRunStatus.finished and run.end_reason == "time is up"
    incident = await store.get_incident(incident.id)
    assert incident.status in (IncidentStatus.resolved, IncidentStatus.closed)
    assert incident.scripts[-1].kind.value == "stand_down" and incident.scripts[-1].sms.startswith("【演练】")


async def test_a_real_surge_during_a_drill_opens_its_own_incident(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    svc = await services(store, catalog, clock)
    await learn(svc)
    run = await svc.drills.start("weekly-broadband")
    assert run is not None
    await drive_until_open(svc, clock, run.id)
    assert len(await store.list_incidents(drill=True)) == 1
    for n in range(60):  # the real thing, in the same stream
        clock.advance(timedelta(seconds=3))
        await svc.pipeline.receive([(1, {"id": f"real-{n}", "received_at": clock.now().isoformat(), "channel": "hotline",
                                         "category": "broadband", "region": "ningbo", "text": "宽带断网"})])
    real = await store.list_incidents(drill=False)
    drills = await store.list_incidents(drill=True)
    assert len(real) == 1 and len(drills) == 1
    assert real[0].id.startswith("INC-") and real[0].surge_key == "broadband/ningbo" and not real[0].drill_run
    assert real[0].script(1) is not None and not real[0].script(1).sms.startswith("【演练】")  # type: ignore[union-attr]


async def test_trigger_drill_ends_when_everyone_acknowledged(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    svc = await services(store, catalog, clock)
    run = await svc.drills.start("monthly-billing")
    assert run is not None and run.incident_id is not None and run.detected is None
    incident = await store.get_incident(run.incident_id)
    assert incident.drill and incident.playbook == "billing-error"
    v1 = incident.script(1)
    assert v1 is not None and not v1.approved  # approval: leader, also in a drill
    leader = incident.roles[0].holder
    assert leader is not None
    await svc.pipeline.approve(incident.id, 1, leader)
    incident = await store.get_incident(incident.id)
    recipients = {d.key.person_id for d in await store.deliveries(incident.id) if d.key.channel in ("sms", "email")}
    assert recipients
    await drive(svc, clock, 1)
    assert (await store.get_drill_run(run.id)).status == DrillRunStatus.running  # type: ignore[union-attr]
    for person in recipients:
        await svc.pipeline.acknowledge(incident.id, 1, person, via="sms")
    for role in incident.roles:
        if role.holder:
            await svc.pipeline.ack_role(incident.id, role.holder, role.role)
    await drive(svc, clock, 1)
    done = await store.get_drill_run(run.id)
    assert done is not None and done.status == DrillRunStatus.finished and done.end_reason == "all acknowledged"
    assert (await store.get_incident(incident.id)).status != IncidentStatus.open


def with_multiplier(catalog: Catalog, multiplier: float) -> Catalog:
    """The shipped config with the weekly drill's surge at `multiplier` times the baseline."""
    drill = catalog.drills["weekly-broadband"]
    changed = drill.model_copy(update={"scenario": drill.scenario.model_copy(update={"multiplier": multiplier})})
    return replace(catalog, drills={**catalog.drills, drill.id: changed})


async def test_a_drill_on_a_stream_that_learned_nothing_is_judged_as_a_new_stream(store: Store,
                                                                                  catalog: Catalog) -> None:
    """No history at all: the drill's streams start from the prior the real ones would
    (categories.yaml's broadband figure), and a x10 surge is detected, not triggered. (The
    shipped x8 is detected so about 3 runs in 4, the rest fall back to a trigger: the
    synthetic counts are random per run, and a young stream's level learns fast.)"""
    clock = ManualClock(T0)
    svc = await services(store, with_multiplier(catalog, 10.0), clock)
    run = await svc.drills.start("weekly-broadband")
    assert run is not None and run.incident_id is None
    assert run.notes == [f"stream broadband/{r} has no learned baseline yet: judged as a new stream would be"
                         for r in ("ningbo", "*")]
    run = await drive_until_open(svc, clock, run.id)
    assert run is not None and run.incident_id is not None and run.detected is True, run.notes


async def test_a_cold_stream_drill_whose_surge_is_not_unmistakable_falls_back_to_a_trigger(
        store: Store, catalog: Catalog) -> None:
    """x1.5 on a stream with no history is no evidence for a young stream: at the end of
    the surge the playbook is triggered directly, and the run says why."""
    clock = ManualClock(T0)
    svc = await services(store, with_multiplier(catalog, 1.5), clock)
    run = await svc.drills.start("weekly-broadband")
    assert run is not None and run.incident_id is None
    run = await drive_until_open(svc, clock, run.id)
    assert run is not None and run.incident_id is not None and run.detected is False
    assert run.notes[-1] == ("no surge was detected while the synthetic complaints came in: "
                             "the playbook was triggered directly")
    assert "has no learned baseline yet" in run.notes[0]


# --- over HTTP ------------------------------------------------------------------------------


async def test_drills_api(aiohttp_client: Any, store: Store, catalog: Catalog) -> None:
    from coordinator.app import create_app

    from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

    clock = ManualClock(T0)
    settings = Settings(subscriber_key="k", tick_seconds=0, admin_token=ADMIN_TOKEN, outbox_worker=False)
    client = await aiohttp_client(create_app(settings, clock=clock, store=store, catalog=catalog), headers=ADMIN_HEADERS)
    listed = (await (await client.get("/api/drills")).json())["drills"]
    weekly = next(d for d in listed if d["id"] == "weekly-broadband")
    assert weekly["next_runs"][0] == WED_10.isoformat().replace("+00:00", "+08:00") or \
        datetime.fromisoformat(weekly["next_runs"][0]) == WED_10
    assert weekly["last_run"] is None and weekly["scenario"] == "surge"
    resp = await client.post("/api/drills/monthly-billing/run", json={"by": "wang-fang"})
    assert resp.status == 201, await resp.text()
    run = (await resp.json())["run"]
    assert run["drill_id"] == "monthly-billing" and run["how"] == "manual" and run["by"] == "wang-fang"
    assert run["incident_id"].startswith("DRL-")
    assert (await client.post("/api/drills/nope/run")).status == 404
    reports = await (await client.get("/api/drills/monthly-billing/reports")).json()
    assert [r["run"]["id"] for r in reports["reports"]] == [run["id"]]
    assert reports["reports"][0]["incident"]["drill"] is True
    assert (await client.get("/api/drills/nope/reports")).status == 404
    page = await client.get("/api/drills/monthly-billing/reports", headers={"Accept": "text/html"})
    assert page.status == 200 and "演练报告" in await page.text()


async def test_drill_api_refuses_sandbox_drills_on_a_real_service(aiohttp_client: Any, store: Store,
                                                                  catalog: Catalog) -> None:
    from coordinator.app import create_app

    from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

    settings = Settings(subscriber_key="k", tick_seconds=0, admin_token=ADMIN_TOKEN, outbox_worker=False,
                        twilio_account_sid="AC" + "1" * 32, twilio_auth_token="t", twilio_from="+15005550006")
    client = await aiohttp_client(create_app(settings, clock=ManualClock(T0), store=store, catalog=catalog),
                                  headers=ADMIN_HEADERS)
    resp = await client.post("/api/drills/weekly-broadband/run")
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "drill_refused"


# --- the command line -----------------------------------------------------------------------


def test_cli_drill_list(capsys: Any) -> None:
    from coordinator.commands.cli import main

    assert main(["drill", "list", "--config", str(ROOT)]) == 0
    out = capsys.readouterr().out
    assert "weekly-broadband" in out and 'schedule "0 10 * * wed" (Asia/Shanghai)' in out


def test_cli_drill_run_in_the_sandbox_prints_its_report(capsys: Any) -> None:
    from coordinator.commands.cli import main

    assert main(["drill", "run", "weekly-broadband", "--config", str(ROOT), "--answer-share", "1"]) == 0
    out = capsys.readouterr().out
    assert "finished: all acknowledged" in out
    assert "time to detect:" in out and "NOT detected" not in out
    assert "success:" in out and "PASSED" in out
    assert main(["drill", "run", "nope", "--config", str(ROOT)]) == 2


async def test_a_sandbox_service_runs_sandbox_drills_and_sends_only_to_the_sandbox(
        aiohttp_client: Any, store: Store, catalog: Catalog) -> None:
    from coordinator.app import create_app
    from coordinator.web.state import SERVICES

    from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

    settings = Settings(subscriber_key="k", tick_seconds=0, admin_token=ADMIN_TOKEN, outbox_worker=False, sandbox=True,
                        twilio_account_sid="AC" + "1" * 32, twilio_auth_token="t", twilio_from="+15005550006",
                        smtp_host="smtp.example.com")  # real-looking settings: the sandbox replaces them
    client = await aiohttp_client(create_app(settings, clock=ManualClock(T0), store=store, catalog=catalog),
                                  headers=ADMIN_HEADERS)
    services = client.app[SERVICES]
    assert services.settings.twilio_base_url.startswith("http://127.0.0.1:")
    assert services.settings.smtp_host == "127.0.0.1"
    resp = await client.post("/api/drills/monthly-billing/run")
    assert resp.status == 201, await resp.text()
    run = (await resp.json())["run"]
    assert (await client.post(f"/api/incidents/{run['incident_id']}/scripts/1/approve", json={"by": "chen-li"})).status == 200
    await services.outbox.drain()
    sent = [d for d in await store.deliveries(run["incident_id"]) if d.key.channel in ("sms", "email")]
    assert sent and all(d.status.value in ("sent", "delivered") for d in sent)
    page = await client.get("/sandbox/")  # the service's own sandbox page (the admin token holds trainer)
    assert page.status == 200
    phone = next(d.address for d in sent if d.key.channel == "sms")
    assert phone in await page.text()
