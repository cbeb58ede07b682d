"""The alarm receivers over HTTP: Alertmanager's webhook and the PagerDuty Events API v2
endpoint, each behind its own secret (404 when not configured, 401 without it), a
malformed body refused naming the field with nothing acted on, answers as documented
in the OpenAPI document. End to end: a real `coordinator serve` with the shipped
samples and the Twilio sandbox; an Alertmanager firing opens the incident and the first
script SMS reaches the sandbox."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from coordinator.app import create_app
from coordinator.clock import ManualClock
from coordinator.config.catalog import load_catalog
from coordinator.config.settings import Settings
from coordinator.sandbox import Delivery, TwilioSandbox
from coordinator.web.openapi import document

from .conftest import ADMIN_TOKEN, REPO
from .redis_server import free_port
from .service_process import ServeProcess
from .test_alarms import AM, PD, config_with
from .test_alarms_flow import RULES
from .test_openapi import answer_schema, schema_validator

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
AM_TOKEN = "alertmanager-token-0123456789"
PD_KEY = "pagerduty-routing-key-0123456789"
AM_PATH, PD_PATH = "/hooks/alertmanager", "/hooks/pagerduty/v2/enqueue"
BEARER = {"Authorization": f"Bearer {AM_TOKEN}"}


def am_body(*alerts: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(AM)
    body["alerts"] = list(alerts)
    body["commonLabels"] = {}
    return body


def alert(fingerprint: str, status: str = "firing", city: str = "HZ", name: str = "BaseStationDown") -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, "city": city, "site": "西湖3号"},
            "annotations": {}, "fingerprint": fingerprint}


async def check(resp: Any, path: str) -> Any:
    body = await resp.json()
    schema_validator(answer_schema(path, "post", resp.status)).validate(body)
    return body


async def make_client(aiohttp_client: Any, tmp_path: Path, **settings: Any) -> TestClient:
    config = config_with(tmp_path, RULES)
    app = create_app(Settings(store_url=f"sqlite:///{tmp_path}/a.db", subscriber_key="k", tick_seconds=0,
                              admin_token=ADMIN_TOKEN, outbox_worker=False, users_file=tmp_path / "users.yaml",
                              **settings), clock=ManualClock(T0), catalog=load_catalog(config))
    return await aiohttp_client(app)


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await make_client(aiohttp_client, tmp_path, alertmanager_token=AM_TOKEN, pagerduty_routing_key=PD_KEY)


async def incidents(client: TestClient) -> list[dict[str, Any]]:
    resp = await client.get("/api/incidents", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status == 200
    return list((await resp.json())["incidents"])


async def test_receivers_without_their_secret_are_not_configured(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await make_client(aiohttp_client, tmp_path)
    off = await check(await client.post(AM_PATH, json=am_body(alert("f1")), headers=BEARER), AM_PATH)
    assert off["error"]["code"] == "not_configured" and "COORDINATOR_ALERTMANAGER_TOKEN" in off["error"]["message"]
    pd = await client.post(PD_PATH, json=PD)
    assert pd.status == 404
    assert "COORDINATOR_PAGERDUTY_ROUTING_KEY" in (await check(pd, PD_PATH))["message"]


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {AM_TOKEN}"},
    {"Authorization": f"Bearer {ADMIN_TOKEN}"},  # the admin token is not the receiver's
    {"Authorization": "Bearer 令牌"},
])
async def test_alertmanager_wants_its_own_bearer_token(client: TestClient, headers: dict[str, str]) -> None:
    resp = await client.post(AM_PATH, json=am_body(alert("f1")), headers=headers)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    await check(resp, AM_PATH)
    assert await incidents(client) == []


async def test_an_alertmanager_firing_opens_an_incident_once(client: TestClient) -> None:
    body = am_body(alert("f1"), alert("f2", city="NB"), alert("f3", name="DiskFull"), alert("f4", city="SH"))
    answer = await check(await client.post(AM_PATH, json=body, headers=BEARER), AM_PATH)
    outcomes = [(a["dedup_key"], a["outcome"]) for a in answer["alerts"]]
    assert outcomes == [("f1", "opened"), ("f2", "opened"), ("f3", "unmapped"), ("f4", "failed")]
    opened = await incidents(client)
    assert sorted(i["region"] for i in opened) == ["hangzhou", "ningbo"]
    # Alertmanager sends the group again (group_interval, repeat_interval): nothing new
    again = await check(await client.post(AM_PATH, json=body, headers=BEARER), AM_PATH)
    assert [a["outcome"] for a in again["alerts"]][:2] == ["repeat", "repeat"]
    assert len(await incidents(client)) == 2
    cleared = await check(await client.post(AM_PATH, json=am_body(alert("f1", "resolved")), headers=BEARER), AM_PATH)
    assert cleared["alerts"][0]["outcome"] == "resolved"  # the rule resolves once every alarm on it cleared


@pytest.mark.parametrize(("body", "field"), [
    (b"not json", "not JSON"),
    (b"[]", "expected a JSON object"),
    ({**AM, "version": "3"}, "version"),
    ({**AM, "alerts": [alert("ok"), {"status": "firing", "labels": {"city": 7}}]}, "alerts[1].labels.city"),
])
async def test_a_malformed_webhook_is_400_naming_the_field_and_acts_on_nothing(
        client: TestClient, body: Any, field: str) -> None:
    send = {"data": body} if isinstance(body, bytes) else {"json": body}
    resp = await client.post(AM_PATH, headers=BEARER, **send)
    answer = await check(resp, AM_PATH)
    assert resp.status == 400 and answer["error"]["code"] == "invalid_payload"
    assert field in answer["error"]["message"]
    assert await incidents(client) == []  # the good alert beside the bad one is not acted on either


async def test_pagerduty_answers_as_pagerduty(client: TestClient) -> None:
    event = {**PD, "routing_key": PD_KEY, "payload": {**PD["payload"], "class": "bts"},
             "dedup_key": "bts-1"}
    accepted = await check(await client.post(PD_PATH, json=event), PD_PATH)
    assert accepted == {"status": "success", "message": "Event processed", "dedup_key": "bts-1"}
    assert await incidents(client) == []  # no rule for class bts: accepted, unmapped
    wrong = await client.post(PD_PATH, json={**event, "routing_key": "x" * 32})
    assert wrong.status == 401 and (await check(wrong, PD_PATH))["status"] == "unauthorized"
    missing = await client.post(PD_PATH, json={k: v for k, v in event.items() if k != "routing_key"})
    assert missing.status == 401
    bad = await client.post(PD_PATH, json={**event, "event_action": "snooze", "payload": {"summary": ""}})
    answer = await check(bad, PD_PATH)
    assert bad.status == 400 and answer["status"] == "invalid event" and answer["message"] == "Event object is invalid"
    assert any(e.startswith("event_action:") for e in answer["errors"])
    assert any(e.startswith("payload.summary:") for e in answer["errors"])
    unreadable = await client.post(PD_PATH, data=b"{")
    assert unreadable.status == 400 and (await check(unreadable, PD_PATH))["errors"][0].startswith("not JSON")
    # a trigger without a dedup_key gets one back
    keyless = await check(await client.post(PD_PATH, json={k: v for k, v in event.items() if k != "dedup_key"}),
                          PD_PATH)
    assert len(keyless["dedup_key"]) == 32 and keyless["dedup_key"] != "bts-1"


def test_both_receivers_are_documented_as_signed_routes() -> None:
    paths = document()["paths"]
    for path, statuses in ((AM_PATH, {"200", "400", "401", "404", "408", "413", "503"}),
                           (PD_PATH, {"202", "400", "401", "404", "408", "413", "503"})):
        operation = paths[path]["post"]
        assert operation["security"] == [] and operation["tags"] == ["signed"]
        assert set(operation["responses"]) == statuses


# --- end to end --------------------------------------------------------------------------

SID, TOKEN, FROM = "AC" + "3" * 32, "alarm-sandbox-token", "+15005550006"


@pytest.fixture
async def sandbox() -> AsyncIterator[TwilioSandbox]:
    twilio = TwilioSandbox(SID, TOKEN, numbers=(FROM,), seed=3, delivery=Delivery(step_delay=0.01, receipt_delay=0.02))
    await twilio.start()
    try:
        yield twilio
    finally:
        await twilio.stop()


async def test_an_alertmanager_firing_reaches_staff_by_sms(tmp_path: Path, sandbox: TwilioSandbox) -> None:
    service = ServeProcess(REPO, f"sqlite:///{tmp_path}/e2e.db", free_port(), tmp_path / "serve.log",
                           TWILIO_ACCOUNT_SID=SID, TWILIO_AUTH_TOKEN=TOKEN, TWILIO_FROM=FROM,
                           COORDINATOR_TWILIO_BASE_URL=sandbox.base_url, COORDINATOR_ALERTMANAGER_TOKEN=AM_TOKEN,
                           COORDINATOR_USERS_FILE=str(tmp_path / "users.yaml"))
    await service.start()
    try:
        site = "钱江新城基站E2E"
        body = am_body({"status": "firing", "fingerprint": "e2e-1",
                        "labels": {"alertname": "BaseStationDown", "severity": "critical", "city": "HZ",
                                   "site_name": site}, "annotations": {"summary": "基站退服"}})
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{service.url}{AM_PATH}", json=body, headers=BEARER) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
        [handled] = answer["alerts"]
        assert handled["outcome"] == "opened"
        incident = await service.get(f"/api/incidents/{handled['incident']}")
        assert (incident["playbook"], incident["region"], incident["opened_by"]) == (
            "mobile-outage", "hangzhou", "alertmanager")
        assert incident["params"]["affected_area"] == f"{site}周边区域"
        assert any(e["kind"] == "alarm" and e["data"]["dedup_key"] == "e2e-1" for e in incident["timeline"])
        async with asyncio.timeout(30):
            while not [m for m in sandbox.messages if site in m.body and "统一口径v1" in m.body]:
                await asyncio.sleep(0.05)
        # the second Alertmanager in an HA pair sends the same: one incident still
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{service.url}{AM_PATH}", json=body, headers=BEARER) as resp:
                assert (await resp.json())["alerts"][0]["outcome"] == "repeat"
        assert len(await service.get("/api/incidents")) == 1
    finally:
        service.stop()
    assert "Traceback" not in service.output()


async def test_a_reload_puts_a_new_alerts_file_in_use(aiohttp_client: Any, tmp_path: Path) -> None:
    from coordinator.app import reload_catalog
    from coordinator.web.state import SERVICES

    config = config_with(tmp_path / "reload", "alerts: []\n")
    app = create_app(Settings(store_url=f"sqlite:///{tmp_path}/r.db", subscriber_key="k", tick_seconds=0,
                              admin_token=ADMIN_TOKEN, outbox_worker=False, users_file=tmp_path / "users.yaml",
                              config_dir=config, alertmanager_token=AM_TOKEN), clock=ManualClock(T0))
    client = await aiohttp_client(app)
    answer = await check(await client.post(AM_PATH, json=am_body(alert("r1")), headers=BEARER), AM_PATH)
    assert answer["alerts"][0]["outcome"] == "unmapped"
    (config / "alerts.yaml").write_text(RULES + "  - {match: {x: y}, playbook: outage, region: nowhere}\n", "utf-8")
    assert not await reload_catalog(app[SERVICES])  # a bad file is refused; the one in use stays
    (config / "alerts.yaml").write_text(RULES, encoding="utf-8")
    assert await reload_catalog(app[SERVICES])
    answer = await check(await client.post(AM_PATH, json=am_body(alert("r1")), headers=BEARER), AM_PATH)
    assert answer["alerts"][0]["outcome"] == "opened"
