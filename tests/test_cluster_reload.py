"""A reload asked of one instance reaches every instance sharing the store (cluster.py):
each builds and checks its config files, takes them or refuses naming the problems
(keeping the config it had), and answers through the store; the asker reports who took
it, who refused, and who did not answer in time. In-process here, on SQLite and on a
real Redis (two sets of services on one store, each with its own config directory and
its own cluster loop); tests/test_cluster_serve.py does it with real `serve` processes."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from coordinator.app import build_services, create_app, reload_config
from coordinator.clock import SystemClock
from coordinator.cluster import CLUSTER, Cluster, config_fingerprint
from coordinator.config.catalog import load_catalog
from coordinator.config.settings import Settings
from coordinator.store import Store
from coordinator.store.protocols.instances import Instance
from coordinator.web.state import Services

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN
from .test_openapi import check

FIXTURES = Path(__file__).parent / "fixtures"
POLL = 0.05


def config_copy(root: Path) -> Path:
    shutil.copytree(FIXTURES / "good", root)
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


class Member:
    """One instance: its services over its own config directory, and its cluster loop."""

    def __init__(self, services: Services, name: str) -> None:
        self.services = services
        self.cluster = Cluster(store=services.store, clock=services.clock, instance_id=name,
                               reload=lambda: reload_config(services),
                               fingerprint=config_fingerprint(services.settings.config_dir), poll_seconds=POLL)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.cluster.step()  # registered before anyone asks
        self.task = asyncio.create_task(self.cluster.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task


async def member(store: Store, config: Path, name: str) -> Member:
    settings = Settings(config_dir=config, subscriber_key="k", tick_seconds=0, ack_secret="a")
    services = await build_services(settings, store=store, catalog=load_catalog(config), clock=SystemClock(),
                                     worker=name)
    return Member(services, name)


@pytest.fixture
async def pair(store: Store, other_store: Store, tmp_path: Path) -> AsyncIterator[tuple[Member, Member]]:
    a = await member(store, config_copy(tmp_path / "a"), "worker-a")
    b = await member(other_store, config_copy(tmp_path / "b"), "worker-b")
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


async def test_a_valid_change_is_taken_by_every_instance(pair: tuple[Member, Member]) -> None:
    a, b = pair
    for m in pair:
        edit(m.services.settings.config_dir / "playbooks" / "outage.yaml", "title: 移动网络故障", "title: 移动网络大面积故障")
    before = b.services.catalog
    report = await a.cluster.reload_everywhere("chen-li", wait=10)
    assert report.result == "took", report
    assert [o.instance for o in report.took] == ["worker-a", "worker-b"] and not report.silent
    assert report.request.by == "chen-li"
    for m in pair:
        assert m.services.catalog.playbooks["outage"].title == "移动网络大面积故障"
        assert m.services.pipeline.catalog() is m.services.catalog
        assert m.cluster.fingerprint == config_fingerprint(m.services.settings.config_dir)
    assert b.services.catalog is not before
    assert {o.config for o in report.took} == {config_fingerprint(a.services.settings.config_dir)}
    # the registry shows the config each one runs
    seen = await a.services.store.instances(datetime.now(timezone.utc) - timedelta(seconds=30))
    assert {i.id: i.config for i in seen} == {o.instance: o.config for o in report.took}


async def test_a_broken_file_is_refused_everywhere_and_the_old_config_kept(pair: tuple[Member, Member]) -> None:
    a, b = pair
    kept = {m.cluster.instance_id: (m.services.catalog, m.cluster.fingerprint) for m in pair}
    for m in pair:
        edit(m.services.settings.config_dir / "playbooks" / "outage.yaml", "min_count: 10", "min_count: lots")
    report = await b.cluster.reload_everywhere("admin", wait=10)
    assert report.result == "refused" and not report.took and not report.silent
    assert [o.instance for o in report.refused] == ["worker-a", "worker-b"]
    for outcome in report.refused:
        assert any(p.startswith("playbooks/outage.yaml:5:") for p in outcome.problems), outcome.problems
        assert outcome.config == kept[outcome.instance][1]  # the fingerprint of the config still in use
    for m in pair:
        assert m.services.catalog is kept[m.cluster.instance_id][0]
        assert m.services.catalog.playbooks["outage"].trigger.min_count == 10


async def test_one_instance_refusing_is_named_and_the_others_take_it(pair: tuple[Member, Member]) -> None:
    a, b = pair
    edit(a.services.settings.config_dir / "playbooks" / "outage.yaml", "min_count: 10", "min_count: 12")
    edit(b.services.settings.config_dir / "playbooks" / "outage.yaml", "id: outage", "id: Outage!")
    report = await a.cluster.reload_everywhere("admin", wait=10)
    assert report.result == "refused"
    assert [o.instance for o in report.took] == ["worker-a"] and [o.instance for o in report.refused] == ["worker-b"]
    assert "playbooks/outage.yaml:1: id: must be a lowercase id (a-z, 0-9, '-', '_'; at most 64), got 'Outage!'" \
        in report.refused[0].problems
    assert a.services.catalog.playbooks["outage"].trigger.min_count == 12


async def test_an_instance_that_does_not_answer_is_listed(pair: tuple[Member, Member]) -> None:
    a, b = pair
    now = datetime.now(timezone.utc)
    # seen a moment ago, then gone without leaving (killed): it cannot answer
    await a.services.store.beat(Instance(id="worker-dead", host="h", pid=1, started_at=now, seen_at=now,
                                         config="x", config_loaded_at=now))
    await b.close()  # stopped: it leaves the registry, and is not waited for
    assert [i.id for i in await a.services.store.instances(now - timedelta(seconds=30))] == ["worker-a", "worker-dead"]
    report = await a.cluster.reload_everywhere("admin", wait=0.3)
    assert report.result == "incomplete"
    assert [o.instance for o in report.took] == ["worker-a"] and [i.id for i in report.silent] == ["worker-dead"]


async def test_several_requests_at_once_are_each_answered(pair: tuple[Member, Member]) -> None:
    a, b = pair
    reports = await asyncio.gather(a.cluster.reload_everywhere("admin", wait=10),
                                   b.cluster.reload_everywhere("admin", wait=10),
                                   a.cluster.reload_everywhere("admin", wait=10))
    assert len({r.request.id for r in reports}) == 3
    for report in reports:
        assert report.result == "took" and [o.instance for o in report.took] == ["worker-a", "worker-b"]


# --- POST /api/admin/reload on one in-process service --------------------------------------


@pytest.fixture
async def served(aiohttp_client: Any, tmp_path: Path) -> tuple[Any, Path]:
    config = config_copy(tmp_path / "config")
    settings = Settings(store_url=f"sqlite:///{tmp_path}/r.db", config_dir=config, subscriber_key="k",
                        tick_seconds=0, admin_token=ADMIN_TOKEN, outbox_worker=False,
                        users_file=tmp_path / "users.yaml")
    return await aiohttp_client(create_app(settings, catalog=load_catalog(config)), headers=ADMIN_HEADERS), config


def gauge(text: str, name: str) -> float:
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


async def test_the_route_answers_as_documented(served: tuple[Any, Path]) -> None:
    client, config = served
    took = await check(await client.post("/api/admin/reload?wait=2"), "/api/admin/reload", "post")
    assert took["result"] == "took" and took["took"] == [client.app[CLUSTER].instance_id]
    assert took["instances"][0]["outcome"] == "took" and took["by"] == "admin"
    assert took["instances"][0]["config"] == config_fingerprint(config)
    assert gauge(await (await client.get("/metrics")).text(), "coordinator_config_last_reload_successful") == 1

    edit(config / "playbooks" / "outage.yaml", "min_count: 10", "min_count: lots")
    resp = await client.post("/api/admin/reload")
    assert resp.status == 409
    refused = await check(resp, "/api/admin/reload", "post")
    assert refused["error"]["code"] == "reload_refused"
    assert any(p.startswith("playbooks/outage.yaml:5:") for p in refused["error"]["details"])
    assert refused["reload"]["result"] == "refused" and refused["reload"]["instances"][0]["problems"]
    assert refused["reload"]["instances"][0]["config"] == took["instances"][0]["config"]
    assert gauge(await (await client.get("/metrics")).text(), "coordinator_config_last_reload_successful") == 0

    for wait in ("-1", "61", "soon", "nan", "inf"):
        bad = await client.post(f"/api/admin/reload?wait={wait}")
        assert bad.status == 400 and (await check(bad, "/api/admin/reload", "post"))["error"]["code"] == "invalid_wait"
    assert (await client.post("/api/admin/reload", headers={"Authorization": ""})).status == 401
