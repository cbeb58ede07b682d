"""Lifecycle events out, end to end: a real `coordinator serve` (sandbox channels) with
webhooks.yaml naming loopback subscribers run by this test. A subscriber that answers
500 then 200 gets each event twice, signed, the same bytes and id, and never again; one
that never answers and one that answers 429 hold nobody else up; a 410 stops the
retries; events older than max_age_hours are dropped and counted; events queued when the
service is killed with SIGKILL are delivered after it restarts; two instances on one
Redis deliver each event to a subscriber exactly once."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
import uuid
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest

from coordinator.store.redis import RedisStore

from .conftest import REPO
from .service_process import ServeProcess
from .webhook_receiver import OTHER_SECRET, SECRET, Receiver
from coordinator.commands.sandboxed import free_port

SECRETS = {"TEST_HOOK_SECRET": SECRET, "TEST_HOOK_OTHER_SECRET": OTHER_SECRET}
STORY = {"cn.coordinator.incident.opened", "cn.coordinator.script.approved", "cn.coordinator.script.published",
         "cn.coordinator.incident.resolved"}


def write_config(target: Path, subscribers: dict[str, tuple[Receiver, str, float]], max_age_hours: float = 24) -> Path:
    """The repository's config plus a webhooks.yaml: id -> (receiver, secret variable,
    timeout). Subscribers that must see each event a set number of times get a long
    timeout: on a loaded machine, a 200 the sender gave up waiting for is sent again
    (at least once, by design)."""
    for folder in ("playbooks", "templates", "contacts", "drills"):
        shutil.copytree(REPO / folder, target / folder)
    shutil.copy(REPO / "categories.yaml", target / "categories.yaml")
    lines = ["source: /coordinator/test", f"max_age_hours: {max_age_hours}", "subscribers:"]
    for subscriber_id, (receiver, variable, timeout) in subscribers.items():
        lines += [f"  - id: {subscriber_id}", f"    url: {receiver.url}", f"    secret_env: {variable}",
                  f"    timeout_seconds: {timeout}"]
    (target / "webhooks.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def serve(config: Path, store_url: str, log: Path) -> ServeProcess:
    return ServeProcess(config, store_url, free_port(), log, COORDINATOR_SANDBOX="1", COORDINATOR_TICK_SECONDS="1",
                        **SECRETS)


async def story(service: ServeProcess, region: str = "ningbo") -> str:
    """An incident opened (its script approved at once and published), then resolved."""
    status, body = await service.post("/api/incidents", {"playbook": "broadband-outage", "region": region,
                                                         "by": "chen-li"})
    assert status == 201, body
    status, resolved = await service.post(f"/api/incidents/{body['id']}/resolve", {"note": "fixed", "by": "chen-li"})
    assert status == 200, resolved
    return str(body["id"])


def types_of(receiver: Receiver, incident_id: str) -> set[str]:
    return {r.event["type"] for r in receiver.delivered().values() if r.event["subject"] == incident_id}


async def metrics_text(service: ServeProcess) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{service.url}/metrics") as resp:
            assert resp.status == 200
            return await resp.text()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
async def receivers() -> AsyncIterator[dict[str, Receiver]]:
    made = {"flaky": await Receiver(answer=lambda n: 500 if n == 1 else 200).start(),
            "dead": await Receiver(answer=lambda n: "hang").start(),
            "limited": await Receiver(answer=lambda n: 429).start(),
            "gone": await Receiver(answer=lambda n: 410).start(),
            "down": await Receiver(answer=lambda n: 503).start()}
    yield made
    for receiver in made.values():
        await receiver.stop()


async def test_retries_signatures_and_no_subscriber_holding_up_another(
        receivers: dict[str, Receiver], tmp_path: Path) -> None:
    flaky, dead, limited = receivers["flaky"], receivers["dead"], receivers["limited"]
    config = write_config(tmp_path / "config", {"crm": (flaky, "TEST_HOOK_SECRET", 30),
                                                "screen": (dead, "TEST_HOOK_OTHER_SECRET", 30),
                                                "orders": (limited, "TEST_HOOK_SECRET", 5)})
    service = serve(config, f"sqlite:///{tmp_path}/hooks.db", tmp_path / "serve.log")
    await service.start()
    try:
        incident_id = await story(service)
        # Every event reaches crm (after one 500 each) while screen's first request still
        # hangs, unanswered, and orders is still refused: neither holds crm up.
        await flaky.wait_for(lambda: types_of(flaky, incident_id) >= STORY)
        assert dead.hanging >= 1 and not dead.delivered()
        await limited.wait_for(lambda: len(limited.received) >= 2)
        assert not limited.delivered()
        # the receiver has its 200s; the sender counts each once it has read that answer
        text = await metrics_text(service)
        for _ in range(200):
            if sample(text, "coordinator_webhook_deliveries_total", subscriber="crm", outcome="sent") >= len(STORY):
                break
            await asyncio.sleep(0.05)
            text = await metrics_text(service)
    finally:
        service.stop()
    for event_id, got in flaky.delivered().items():
        tries = [r for r in flaky.received if r.id == event_id]
        assert [t.status for t in tries] == [500, 200], event_id
        assert tries[0].body == tries[1].body and tries[0].event["id"] == event_id
        assert all(t.signed_by(SECRET) for t in tries)
        assert got.headers["Content-Type"] == "application/cloudevents+json"
        assert got.event["source"] == "/coordinator/test" and got.event["specversion"] == "1.0"
    assert all(r.signed_by(OTHER_SECRET) and not r.signed_by(SECRET) for r in dead.received)
    # 429 with Retry-After: 1 is retried (the back-off, at least 2.5 s, is the longer wait).
    assert len({r.id for r in limited.received}) <= len(limited.received)
    assert sample(text, "coordinator_webhook_deliveries_total", subscriber="crm", outcome="sent") >= len(STORY)
    assert sample(text, "coordinator_webhook_deliveries_total", subscriber="crm", outcome="failed") >= len(STORY)
    assert sample(text, "coordinator_webhook_deliveries_total", subscriber="orders", outcome="failed") >= 2
    assert sample(text, "coordinator_webhook_queue_depth", subscriber="screen") >= len(STORY)
    log = service.output()
    assert "must-not-be-logged" not in log and SECRET not in log and OTHER_SECRET.removeprefix("whsec_") not in log


async def test_gone_stops_retrying_and_old_events_are_dropped(receivers: dict[str, Receiver], tmp_path: Path) -> None:
    gone, down = receivers["gone"], receivers["down"]
    # Events older than 0.002 h (7.2 s) are given up: down's second or third attempt is the last.
    config = write_config(tmp_path / "config", {"archive": (gone, "TEST_HOOK_SECRET", 5),
                                                "board": (down, "TEST_HOOK_SECRET", 5)}, max_age_hours=0.002)
    service = serve(config, f"sqlite:///{tmp_path}/hooks.db", tmp_path / "serve.log")
    await service.start()
    try:
        incident_id = await story(service)
        await gone.wait_for(lambda: {r.event["type"] for r in gone.received} >= STORY)
        events = {r.id for r in down.received}
        async with asyncio.timeout(90):  # until every event down was sent is dropped (after 7.2 s)
            while True:
                text = await metrics_text(service)
                if sample(text, "coordinator_webhook_deliveries_total", subscriber="board", outcome="dropped") >= \
                        len(events) >= len(STORY) and not sample(text, "coordinator_webhook_queue_depth",
                                                                 subscriber="board"):
                    break
                await asyncio.sleep(0.5)
                events = {r.id for r in down.received}
        tries_before = len(down.received)
        text = await metrics_text(service)
    finally:
        service.stop()
    assert len(gone.received) == len({r.id for r in gone.received})  # a 410: one request per event
    assert sample(text, "coordinator_webhook_deliveries_total", subscriber="archive", outcome="gone") == \
        len(gone.received)
    assert all(r.event["subject"] == incident_id for r in down.received) and tries_before >= len(events)
    assert "dropped after" in service.output()


async def test_events_queued_at_a_kill_are_delivered_after_the_restart(tmp_path: Path) -> None:
    receiver = Receiver()  # not listening yet: every attempt is refused
    config = write_config(tmp_path / "config", {"crm": (receiver, "TEST_HOOK_SECRET", 30)})
    service = serve(config, f"sqlite:///{tmp_path}/hooks.db", tmp_path / "serve.log")
    await service.start()
    try:
        incident_id = await story(service)
        async with asyncio.timeout(30):  # until the whole story is queued (failed attempts counted)
            while sample(await metrics_text(service), "coordinator_webhook_queue_depth", subscriber="crm") < len(STORY):
                await asyncio.sleep(0.2)
        service.kill9()
        await receiver.start()
        await service.start()
        await receiver.wait_for(lambda: types_of(receiver, incident_id) >= STORY)
    finally:
        service.stop()
        await receiver.stop()
    ids = [r.id for r in receiver.received]
    assert len(ids) == len(set(ids))  # each once
    assert all(r.signed_by(SECRET) for r in receiver.received)


async def test_two_instances_on_redis_deliver_each_event_once(redis_url: str, tmp_path: Path) -> None:
    slow = await Receiver(answer=lambda n: 200).start()
    prefix = f"hooks-{uuid.uuid4().hex[:8]}:"
    config = write_config(tmp_path / "config", {"crm": (slow, "TEST_HOOK_SECRET", 30)})
    a = serve(config, f"{redis_url}?prefix={prefix}", tmp_path / "a.log")
    b = serve(config, f"{redis_url}?prefix={prefix}", tmp_path / "b.log")
    await a.start()
    await b.start()
    store = await RedisStore.open(redis_url, 300, prefix=prefix)
    try:
        incidents = [await story(a, "ningbo"), await story(b, "hangzhou"), await story(a, "wenzhou")]
        await slow.wait_for(lambda: all(types_of(slow, i) >= STORY for i in incidents))
        async with asyncio.timeout(60):
            while await store.webhook_queue_depths():
                await asyncio.sleep(0.1)
    finally:
        a.stop()
        b.stop()
        await store.close()
        await slow.stop()
    ids = [r.id for r in slow.received]
    twice = {i: n for i, n in Counter(ids).items() if n > 1}
    assert not twice, f"sent more than once: {twice}\n{a.output()[-2000:]}\n{b.output()[-2000:]}"
    assert len(set(ids)) >= 3 * len(STORY)  # every incident's story, each event once
