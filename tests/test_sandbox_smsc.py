"""`serve --sandbox` with COORDINATOR_SANDBOX_SMS=smpp: SMS goes over SMPP to a sandbox
SMSC on loopback, and the trainer's sandbox page shows each phone's messages, joined
as the phone shows them, and replies as a staff member through the SMSC (a deliver_sm
to the service), which acknowledges and answers by SMS."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from coordinator.config.catalog import Catalog
from coordinator.drills import channels_are_sandbox
from coordinator.sandbox.inprocess import SANDBOX_SOURCE_ADDR
from coordinator.sandbox.phones import SmscPhones

from .conftest import ADMIN_HEADERS
from .test_sandbox_page import HTML, Service, reply_form, serve, sign_in


@pytest.fixture
async def service(tmp_path: Path, catalog: Catalog) -> AsyncIterator[Service]:
    server = await serve(tmp_path, catalog, sandbox=True, sandbox_sms="smpp")
    try:
        yield Service(server)
    finally:
        await server.close()


async def test_a_trainer_reads_and_replies_through_the_sandbox_smsc(service: Service) -> None:
    phones = service.sandbox.sms
    assert isinstance(phones, SmscPhones)
    assert channels_are_sandbox(service.services.settings)  # drills in sandbox channels may run here
    async with service.session() as admin:
        resp = await admin.post("/api/incidents", json={"playbook": "broadband-outage", "region": "ningbo"},
                                headers=ADMIN_HEADERS)
        assert resp.status == 201, await resp.text()
        incident_id = (await resp.json())["id"]
    await service.services.outbox.drain()
    incident = await service.services.store.get_incident(incident_id)
    holders = {p for role in incident.roles for p in role.chain}
    sms = [d for d in await service.services.store.deliveries(incident_id)
           if d.key.medium == "sms" and d.key.is_script and d.key.person_id not in holders]
    person, phone = sms[0].key.person_id, sms[0].address
    await phones.smsc.wait_for(lambda: phones.counts().get("delivered", 0) >= len(sms))
    async with service.session() as http:
        await sign_in(http, "zhao-min")
        page = await (await http.get(f"/sandbox/?who={person}", headers=HTML)).text()  # one person's messages
        v1 = incident.script(1)
        assert v1 is not None and phone in page and "已送达" in page
        assert v1.sms.split("，")[0] in page  # the whole script as the phone joins its parts
        form = reply_form(page, phone)
        assert form["from"] == phone and form["to"] == SANDBOX_SOURCE_ADDR
        resp = await http.post("/sandbox/reply", data={**form, "body": "确认"}, allow_redirects=False)
        assert resp.status == 303, await resp.text()
        acks = await service.services.store.acks(incident_id)
        assert [(a.person_id, a.via) for a in acks if a.version] == [(person, "sms")]
        await phones.smsc.wait_for(lambda: any("已确认" in m.body for m in phones.threads()[phone]))
        page = await (await http.get(f"/sandbox/?who={person}", headers=HTML)).text()
        assert "已确认" in page
        resp = await http.post("/sandbox/reply", data={**form, "to": "+15550009999", "body": "1"})
        assert resp.status == 400
