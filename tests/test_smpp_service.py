"""The service with SMS through an SMSC over SMPP (the sandbox SMSC on loopback): the
official script reaches every phone in scope as the SMSC joins it, receipts move each
delivery to delivered, and a staff member's "1 CODE" texted to our number acknowledges
exactly that incident and is answered by SMS, as Twilio's inbound webhook is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, timezone
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from coordinator.app import create_app
from coordinator.clock import ManualClock
from coordinator.commands.sandboxed import free_port
from coordinator.config.catalog import Catalog
from coordinator.config.settings import Settings
from coordinator.errors import SettingsError
from coordinator.models import DeliveryStatus
from coordinator.roster import audience
from coordinator.sandbox.smsc import SandboxSmsc
from coordinator.store import Store
from coordinator.web.state import SERVICES, Services

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
OURS = "1065712345"


class Env:
    def __init__(self, client: TestClient, smsc: SandboxSmsc) -> None:
        self.client, self.smsc = client, smsc

    @property
    def services(self) -> Services:
        return self.client.app[SERVICES]  # type: ignore[index]

    async def trigger(self, playbook: str = "broadband-outage", region: str = "ningbo") -> dict[str, Any]:
        resp = await self.client.post("/api/incidents", json={"playbook": playbook, "region": region, "by": "chen-li"})
        assert resp.status == 201, await resp.text()
        return dict(await resp.json())

    async def delivered(self, incident_id: str) -> list[Any]:
        """The incident's SMS, once every one has its final status from the receipts."""
        store = self.services.store
        for _ in range(200):
            await self.services.outbox.drain()
            sms = [d for d in await store.deliveries(incident_id) if d.key.medium == "sms"]
            if sms and all(d.status == DeliveryStatus.delivered for d in sms):
                return sms
            await asyncio.sleep(0.02)
        raise AssertionError(f"not all delivered: {[(d.key.person_id, d.status.value) for d in sms]}")


@pytest.fixture
async def env(store: Store, catalog: Catalog) -> AsyncIterator[Env]:
    clock = ManualClock(T0)
    smsc = SandboxSmsc(clock=clock, receipt_delay=0.01)
    await smsc.start()
    port = free_port()
    settings = Settings(public_url=f"http://127.0.0.1:{port}", subscriber_key="k", ack_secret="ack-secret",
                        tick_seconds=0, outbox_worker=False, admin_token=ADMIN_TOKEN, smpp_host="127.0.0.1",
                        smpp_port=smsc.port, smpp_system_id="sandbox", smpp_password="secret",
                        smpp_source_addr=OURS)
    client = TestClient(TestServer(create_app(settings, clock=clock, store=store, catalog=catalog), port=port),
                        headers=ADMIN_HEADERS)
    await client.start_server()
    try:
        yield Env(client, smsc)
    finally:
        await client.close()
        await smsc.stop()


async def test_the_script_reaches_every_phone_whole_and_receipts_deliver_it(env: Env, catalog: Catalog) -> None:
    body = await env.trigger()
    sms = await env.delivered(body["id"])
    incident = await env.services.store.get_incident(body["id"])
    v1 = incident.script(1)
    assert v1 is not None and v1.sms_segments > 1  # a long Chinese script: parts joined by the phone
    in_scope, _ = audience(catalog.playbooks["broadband-outage"], catalog.contacts, "ningbo", date(2026, 11, 24))
    phones = sorted(r.person.phone for r in in_scope if "sms" in r.channels)
    got = {m.destination.lstrip("+"): m for m in env.smsc.messages if m.text == v1.sms}  # besides: role notices
    assert sorted(got) == sorted(p.lstrip("+") for p in phones)  # type: ignore[union-attr]
    for message in got.values():
        assert message.data_coding == 8  # UCS-2
        assert len(message.message_ids) == v1.sms_segments  # billed as counted before sending
    scripts = [d for d in sms if d.key.is_script]
    assert {d.provider_id for d in scripts} == {",".join(m.message_ids) for m in got.values()}


async def test_a_reply_acknowledges_that_incident_and_is_answered(env: Env) -> None:
    body = await env.trigger()
    sms = await env.delivered(body["id"])
    incident = await env.services.store.get_incident(body["id"])
    holders = {p for role in incident.roles for p in role.chain}
    staff = next(d for d in sms if d.key.is_script and d.key.person_id not in holders)
    person, phone = staff.key.person_id, staff.address
    before = len(env.smsc.messages)
    assert await env.smsc.inject_mo(phone, OURS, f"1 {incident.code}", ucs2=True) == [0]
    acks = await env.services.store.acks(body["id"])
    assert [(a.person_id, a.version, a.via) for a in acks if a.version] == [(person, 1, "sms")]
    await env.smsc.wait_for(lambda: len(env.smsc.messages) > before)
    answer = env.smsc.messages[-1]
    assert answer.destination.lstrip("+") == phone.lstrip("+") and "确认" in answer.text


async def test_stop_texted_to_our_number_stops_sms_to_that_phone(env: Env) -> None:
    body = await env.trigger()
    sms = await env.delivered(body["id"])
    phone = sms[0].address
    assert await env.smsc.inject_mo(phone, OURS, "STOP") == [0]
    assert phone in await env.services.store.opted_out()


def test_one_sms_route_at_a_time() -> None:
    with pytest.raises(SettingsError, match="choose one SMS route"):
        Settings.from_env({"COORDINATOR_SMPP_HOST": "smsc.example", "COORDINATOR_SMPP_SYSTEM_ID": "a",
                           "COORDINATOR_SMPP_PASSWORD": "b", "COORDINATOR_SMPP_SOURCE_ADDR": "1",
                           "TWILIO_ACCOUNT_SID": "AC" + "1" * 32})
    with pytest.raises(SettingsError, match="COORDINATOR_SMPP_PASSWORD"):
        Settings.from_env({"COORDINATOR_SMPP_HOST": "smsc.example", "COORDINATOR_SMPP_SYSTEM_ID": "a",
                           "COORDINATOR_SMPP_SOURCE_ADDR": "1"})
