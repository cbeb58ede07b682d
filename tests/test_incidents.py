"""Incidents on both stores: one per surge key, roles from the roster, escalation level
by level as the injected clock moves, timers that survive a restart and run once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from coordinator.app import build_services, create_app
from coordinator.config.catalog import Catalog, load_catalog
from coordinator.clock import ManualClock
from coordinator.errors import InvalidAction, ParamsInvalid
from coordinator.escalation import due_steps
from coordinator.models import IncidentStatus, Surge
from coordinator.pipeline import Pipeline
from coordinator.playbooks import match_playbook, severity_for
from coordinator.config.schemas import Playbook
from coordinator.config.settings import Settings
from coordinator.store import Store

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai, a Tuesday


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(FIXTURES / "good")


def surge(key: str = "outage/hangzhou", observed: int = 40, ratio: float = 6.0, **extra: Any) -> Surge:
    category, region = key.split("/")
    fields: dict[str, Any] = dict(key=key, category=category, region=region, onset=T0 - timedelta(minutes=15),
                                  detected_at=T0, observed=observed, expected=observed / ratio, ratio=ratio, score=0.99)
    fields.update(extra)
    return Surge.model_validate(fields)


async def pipeline(store: Store, catalog: Catalog, clock: ManualClock, worker: str = "w1") -> Pipeline:
    """The service's own pipeline (its script side included), with no delivery channel."""
    services = await build_services(Settings(subscriber_key="k", tick_seconds=0), store=store, catalog=catalog,
                                    clock=clock, worker=worker)
    return services.pipeline


async def kinds(store: Store, incident_id: str) -> list[str]:
    return [e.kind for e in await store.timeline(incident_id)]


async def test_flow_surge_escalation_ack_resolve_follow_up(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    flow = await pipeline(store, catalog, clock)
    incident = await flow.on_surge(surge())
    # the playbook's wording needs no approval at this severity: sent as the incident opens
    assert incident is not None and incident.status == IncidentStatus.scripted
    assert incident.severity == "major"  # ratio 6 < 8
    leader, tech = incident.roles
    assert (leader.holder, leader.chain) == ("p1", ["p1", "p2"])
    # the rotation started 2026-01-05 (Mon 09:00) with p2, p1 alternating weekly
    weeks = (datetime(2026, 11, 24, 10, 0) - datetime(2026, 1, 5, 9, 0)) // timedelta(days=7)
    assert tech.holder == ["p2", "p1"][weeks % 2]

    # nobody acknowledges; 9 minutes: nothing due yet
    clock.advance(timedelta(minutes=9))
    assert await flow.tick() == []
    # 10 minutes: the leader role escalates to its backup, the tech role has no backup left
    clock.advance(timedelta(minutes=1))
    ran = await flow.tick()
    assert sorted(step.key for _, step in ran) == ["escalate:leader:1", "exhausted:tech"]
    assert await flow.tick() == []  # each due step runs once
    current = await store.get_incident(incident.id)
    assert current.role("leader").holder == "p2"  # type: ignore[union-attr]
    assert current.role("leader").deadline == clock.now() + timedelta(minutes=10)  # type: ignore[union-attr]
    assert any("tech" in alert for alert in current.alerts)

    # the backup acknowledges: the leader role is acknowledged, so is the incident
    acked = await flow.ack_role(incident.id, "p2", role="leader")
    assert acked.acknowledged_at == clock.now()
    assert acked.status == IncidentStatus.scripted  # the status only moves forward
    assert acked.role("leader").acked_by == "p2"  # type: ignore[union-attr]

    # the status update every 30 minutes fires once per period
    clock.advance(timedelta(minutes=25))  # 35 min after opening
    assert [s.key for _, s in await flow.tick()] == ["step:0:1"]

    resolved = await flow.resolve(incident.id, "p2", "光缆已修复")
    assert resolved.status == IncidentStatus.resolved
    clock.advance(timedelta(hours=23, minutes=59))
    assert await flow.tick() == []
    clock.advance(timedelta(minutes=1))
    assert [s.key for _, s in await flow.tick()] == ["follow_up"]
    closed = await store.get_incident(incident.id)
    assert closed.status == IncidentStatus.closed
    sent = ["script_drafted", "script_approved", "script_sent"]
    assert await kinds(store, incident.id) == [
        "opened", "role_assigned", "role_assigned", "script_drafted", "script_approved", "status", "script_sent",
        "escalated", "alert", "role_acked", "status", *sent,  # the status update: a new version
        "status", *sent,  # resolved: the stand-down
        "follow_up", "status",
    ]
    # the key is free again: a new surge opens a new incident
    again = await flow.on_surge(surge())
    assert again is not None and again.id != incident.id


async def test_later_surges_attach_to_the_open_incident(store: Store, catalog: Catalog) -> None:
    flow = await pipeline(store, catalog, ManualClock(T0))
    first = await flow.on_surge(surge(observed=40, ratio=6))
    second = await flow.on_surge(surge(observed=90, ratio=9, regulator=1))
    assert first is not None and second is not None and second.id == first.id
    assert second.surge_count == 2 and second.surge is not None and second.surge.observed == 90
    assert second.severity == "critical"  # ratio 9 >= 8
    assert len(await store.list_incidents()) == 1
    assert len(await store.surges()) == 2


async def test_fifty_concurrent_surges_open_one_incident(store: Store, catalog: Catalog) -> None:
    flows = [await pipeline(store, catalog, ManualClock(T0), worker=f"w{i}") for i in range(5)]
    results = await asyncio.gather(*(flows[i % 5].on_surge(surge()) for i in range(50)))
    assert len({r.id for r in results if r is not None}) == 1
    [incident] = await store.list_incidents()
    assert incident.surge_count == 50
    assert (await kinds(store, incident.id)).count("opened") == 1


async def test_restart_between_timer_creation_and_due_time(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    first = await pipeline(store, catalog, clock, worker="before-restart")
    incident = await first.on_surge(surge())
    assert incident is not None
    del first  # the process stops; only the store remains
    clock.advance(timedelta(minutes=11))
    restarted = [await pipeline(store, catalog, clock, worker=f"after-{i}") for i in range(3)]
    ran = await asyncio.gather(*(p.tick() for p in restarted))
    keys = sorted(step.key for steps in ran for _, step in steps)
    assert keys == ["escalate:leader:1", "exhausted:tech"]
    assert (await kinds(store, incident.id)).count("escalated") == 1


async def test_a_crashed_workers_claim_lapses(store: Store, catalog: Catalog) -> None:
    clock = ManualClock(T0)
    flow = await pipeline(store, catalog, clock)
    incident = await flow.on_surge(surge())
    assert incident is not None
    clock.advance(timedelta(minutes=10))
    # a worker claimed the escalation and died before running it
    assert await store.claim_step(incident.id, "escalate:leader:1", "dead", clock.now(), 60)
    assert [s.key for _, s in await flow.tick()] == ["exhausted:tech"]
    clock.advance(timedelta(seconds=61))
    assert [s.key for _, s in await flow.tick()] == ["escalate:leader:1"]


async def test_manual_trigger_params_and_one_per_key(store: Store, catalog: Catalog) -> None:
    flow = await pipeline(store, catalog, ManualClock(T0))
    opened = await flow.trigger("outage", region="ningbo", params={"cause": "基站断电"}, actor="p1")
    assert opened.created and opened.incident.params == {"cause": "基站断电"}
    assert opened.incident.surge_key == "outage/ningbo" and opened.incident.opened_by == "p1"
    again = await flow.trigger("outage", region="ningbo")
    assert not again.created and again.incident.id == opened.incident.id
    # a surge on the same key attaches to the leader's incident
    attached = await flow.on_surge(surge("outage/ningbo"))
    assert attached is not None and attached.id == opened.incident.id
    # a drill never takes a real incident's place, nor the other way round
    drill = await flow.trigger("outage", region="ningbo", drill=True)
    assert drill.created and drill.incident.drill and drill.incident.id.startswith("DRL-")
    defaulted = await flow.trigger("outage", region="hangzhou")
    assert defaulted.incident.params == {"cause": "正在排查"}
    with pytest.raises(ParamsInvalid, match="unknown parameter 'reason'"):
        await flow.trigger("outage", region="hangzhou", params={"reason": "x"})
    with pytest.raises(InvalidAction, match="unknown region 'beijing'"):
        await flow.trigger("outage", region="beijing")


async def test_a_surge_no_playbook_covers_is_recorded_without_incident(store: Store, catalog: Catalog) -> None:
    flow = await pipeline(store, catalog, ManualClock(T0))
    assert await flow.on_surge(surge("billing/hangzhou")) is None
    assert await flow.on_surge(surge(observed=5)) is None  # below min_count 10
    assert len(await store.surges()) == 2
    assert await store.list_incidents() == []


def test_matching_prefers_the_most_specific_playbook(catalog: Catalog) -> None:
    general = catalog.playbooks["outage"]
    regional = Playbook.model_validate(
        general.model_dump(mode="json") | {"id": "outage-hz", "trigger": {
            "categories": ["outage"], "regions": ["hangzhou"], "min_count": 10, "min_ratio": 3}}
    )
    assert match_playbook([general, regional], surge("outage/hangzhou")).playbook is regional
    assert match_playbook([general, regional], surge("outage/ningbo")).playbook is general
    assert match_playbook([general, regional], surge("outage/*")).playbook is general
    assert "below every trigger" in match_playbook([general], surge(ratio=2)).reason


@pytest.mark.parametrize(
    ("observed", "ratio", "regulator", "expected"),
    [(40, 6, 0, "major"), (40, 8, 0, "critical"), (40, 3, 2, "major")],
)
def test_severity_rules(catalog: Catalog, observed: int, ratio: float, regulator: int, expected: str) -> None:
    policy = catalog.playbooks["outage"].severity
    assert severity_for(policy, surge(observed=observed, ratio=ratio, regulator=regulator)) == expected


def test_periodic_steps_due_once_as_latest_occurrence(catalog: Catalog) -> None:
    playbook = catalog.playbooks["outage"]
    from coordinator.models import Incident

    incident = Incident(id="I", playbook="outage", title="t", severity="major", opened_at=T0, opened_by="x",
                        updated_at=T0)
    assert due_steps(incident, playbook, T0 + timedelta(minutes=29), set()) == []
    [step] = due_steps(incident, playbook, T0 + timedelta(hours=2, minutes=5), set())
    assert (step.key, step.occurrence) == ("step:0:4", 4)
    assert due_steps(incident, playbook, T0 + timedelta(hours=2, minutes=5), {"step:0:4"}) == []


# --- over HTTP --------------------------------------------------------------------


@pytest.fixture
async def client(aiohttp_client: Any, store: Store, catalog: Catalog) -> TestClient:
    settings = Settings(subscriber_key="k", tick_seconds=0, admin_token=ADMIN_TOKEN)
    return await aiohttp_client(create_app(settings, clock=ManualClock(T0), store=store, catalog=catalog),
                                headers=ADMIN_HEADERS)


async def test_api_trigger_ack_resolve(client: TestClient) -> None:
    resp = await client.post("/api/incidents", json={"playbook": "outage", "region": "hangzhou",
                                                     "params": {"cause": "光缆被挖断"}, "by": "p1"})
    assert resp.status == 201
    body = await resp.json()
    iid = body["id"]
    # the playbook is auto-approved: version 1 went out at once
    assert body["status"] == "scripted" and body["playbook"] == "outage" and not body["existing"]
    assert [r["role"] for r in body["roles"]] == ["leader", "tech"]
    assert body["roles"][0]["holder"] == "p1" and body["roles"][0]["acked"] is False
    assert body["timeline"][0]["kind"] == "opened"

    again = await client.post("/api/incidents", json={"playbook": "outage", "region": "hangzhou"})
    assert again.status == 200 and (await again.json())["id"] == iid

    resp = await client.post(f"/api/incidents/{iid}/ack", json={"person": "p1"})
    acked = await resp.json()
    assert resp.status == 200 and acked["status"] == "scripted" and acked["acknowledged_at"] is not None
    resp = await client.post(f"/api/incidents/{iid}/severity", json={"severity": "critical", "by": "p1",
                                                                      "reason": "监管投诉"})
    assert (await resp.json())["severity"] == "critical"
    resp = await client.post(f"/api/incidents/{iid}/notes", json={"by": "p1", "text": "已通知网络部"})
    assert resp.status == 201
    resp = await client.post(f"/api/incidents/{iid}/resolve", json={"by": "p1", "note": "已恢复"})
    assert (await resp.json())["status"] == "resolved"

    detail = await (await client.get(f"/api/incidents/{iid}")).json()
    # ack, severity, note, resolved, then the stand-down drafted, approved and sent
    assert [e["kind"] for e in detail["timeline"]][-8:] == [
        "role_acked", "status", "severity", "note", "status", "script_drafted", "script_approved", "script_sent",
    ]
    assert detail["scripts"][-1]["kind"] == "stand_down"
    listed = await (await client.get("/api/incidents?open=false&drill=false&playbook=outage")).json()
    assert [i["id"] for i in listed["incidents"]] == [iid]
    assert (await (await client.get("/api/incidents?open=true")).json())["incidents"] == []


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/api/incidents", {"playbook": "nope", "region": "hangzhou"}, 404, "not_found"),
        ("/api/incidents", {"region": "hangzhou"}, 400, "bad_request"),
        ("/api/incidents", {"playbook": "outage", "region": "hangzhou", "params": {"x": "1"}}, 400, "invalid_params"),
        ("/api/incidents", {"playbook": "outage", "region": "hangzhou", "params": []}, 400, "invalid_params"),
        ("/api/incidents", {"playbook": "outage", "region": "hangzhou", "severity": "huge"}, 409, "invalid_action"),
        ("/api/incidents/INC-404/ack", {"person": "p1"}, 404, "not_found"),
        ("/api/incidents/INC-404/resolve", {}, 404, "not_found"),
    ],
)
async def test_api_errors(client: TestClient, path: str, body: Any, status: int, code: str) -> None:
    resp = await client.post(path, json=body)
    assert resp.status == status
    assert (await resp.json())["error"]["code"] == code


async def test_api_ack_by_a_stranger_and_double_resolve_are_refused(client: TestClient) -> None:
    iid = (await (await client.post("/api/incidents", json={"playbook": "outage", "region": "hangzhou"})).json())["id"]
    resp = await client.post(f"/api/incidents/{iid}/ack", json={"person": "p3"})
    assert resp.status == 409 and "holds no role" in (await resp.json())["error"]["message"]
    assert (await client.post(f"/api/incidents/{iid}/resolve", json={})).status == 200
    resp = await client.post(f"/api/incidents/{iid}/resolve", json={})
    assert resp.status == 409 and "already resolved" in (await resp.json())["error"]["message"]
