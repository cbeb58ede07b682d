"""GET /metrics in Prometheus's format: complaints, deliveries by medium, purpose and
status, acknowledgements, the outbox, incidents and who has not acknowledged (read from
the store at the scrape), the config's last load; behind a bearer token when one is set."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from coordinator.config.catalog import Catalog
from coordinator.models import Delivery, DeliveryKey
from coordinator.store import Store

from .test_fanout import FROM, Env, make_env


@pytest.fixture
async def env(store: Store, catalog: Catalog) -> AsyncIterator[Env]:
    async for e in make_env(store, catalog):
        yield e


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_a_scrape_after_an_incident(env: Env) -> None:
    before = samples(await (await env.client.get("/metrics")).text())
    resp = await env.client.post("/api/complaints", json={
        "id": "m-1", "received_at": env.clock.now().isoformat(), "channel": "hotline", "category": "broadband",
        "region": "ningbo", "subscriber": "13800001234", "text": "断网"})
    assert resp.status == 200, await resp.text()
    body = await env.trigger()
    await env.settle()
    sms = [d for d in await env.services.store.deliveries(body["id"]) if d.key.medium == "sms" and d.key.is_script]
    await env.sandbox.reply(sms[0].address, FROM, "1")
    resp = await env.client.get("/metrics")
    assert resp.status == 200 and resp.content_type.startswith("text/plain")
    text = await resp.text()
    after = samples(text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("coordinator_complaints_received_total", category="broadband", channel="hotline") == 1
    assert grew("coordinator_delivery_status_total", medium="sms", purpose="script", status="delivered") == len(sms)
    assert grew("coordinator_acknowledgements_total", via="sms") == 1
    assert after[("coordinator_incidents", (("playbook", "broadband-outage"), ("status", "scripted")))] >= 1
    unacked = after[("coordinator_unacknowledged_people", (("incident", body["id"]),))]
    people = {d.key.person_id for d in await env.services.store.deliveries(body["id"]) if d.key.is_script}
    assert unacked == len(people) - 1
    assert after[("coordinator_outbox_depth", ())] == 0
    assert after[("coordinator_outbox_oldest_claim_age_seconds", ())] == 0  # every claim finished
    assert grew("coordinator_time_to_acknowledge_seconds_count", via="sms") == 1
    streams, learning, alarming = env.services.monitor.census()
    assert streams >= 2 and learning >= 2  # broadband/ningbo and broadband/*, both in their first day
    assert (after[("coordinator_streams", ())], after[("coordinator_streams_learning", ())],
            after[("coordinator_streams_alarming", ())]) == (streams, learning, alarming)
    assert after[("coordinator_config_last_reload_successful", ())] == 1
    assert re.search(r"^coordinator_send_attempt_seconds_bucket\{", text, re.M)
    assert "13800001234" not in text  # no subscriber, phone or email in a label


async def test_a_metrics_token_is_asked_for_when_set(env: Env) -> None:
    settings = env.services.settings
    object.__setattr__(settings, "metrics_token", "scrape-token-0123456789")  # as if set at start-up
    try:
        assert (await env.client.get("/metrics", headers={"Authorization": ""})).status == 401
        ok = await env.client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"})
        assert ok.status == 200
    finally:
        object.__setattr__(settings, "metrics_token", None)


def test_the_ops_examples_name_only_metrics_that_exist() -> None:
    import json
    from pathlib import Path

    import yaml

    from coordinator import metrics

    ops = Path(__file__).resolve().parent.parent / "docs" / "ops"
    rules = yaml.safe_load((ops / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((ops / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    known = {family.name + suffix for family in metrics.REGISTRY.collect()
             for suffix in ("", "_total", "_bucket", "_count", "_sum")}
    used = {name for expr in exprs for name in re.findall(r"\bcoordinator_\w+", expr)}
    assert used and used <= known, used - known


async def test_the_outbox_oldest_claim_is_read_at_the_scrape(env: Env) -> None:
    store = env.services.store
    stuck = Delivery(key=DeliveryKey(incident_id="INC-x", version=1, person_id="p1", channel="email"),
                     address="p1@example.com", content_hash="h", updated_at=env.clock.now())
    await store.add_delivery(stuck)
    # claimed by a worker that holds it (an hour's lease: the service's own worker leaves it)
    assert [d.key for d in await store.claim_deliveries("w-stuck", env.clock.now(), 3600, 10, "email")] == [stuck.key]
    env.clock.advance(timedelta(seconds=42))
    after = samples(await (await env.client.get("/metrics")).text())
    assert after[("coordinator_outbox_oldest_claim_age_seconds", ())] == 42
    assert after[("coordinator_outbox_depth", ())] == 1
    await store.finish_delivery(stuck.key)
    after = samples(await (await env.client.get("/metrics")).text())
    assert after[("coordinator_outbox_oldest_claim_age_seconds", ())] == 0
