"""The email acknowledgement link is trusted only as far as the incident bears it out: a
token signed with the service's own secret still acknowledges nothing unless its
incident and version exist and its person is a contact who was sent that version by
email. Anything else gets the bad-link page and writes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from coordinator.acklinks import AckClaim, make_token
from coordinator.app import create_app
from coordinator.config.catalog import Catalog
from coordinator.clock import ManualClock
from coordinator.models import Delivery
from coordinator.config.settings import Settings
from coordinator.web.state import SERVICES, Services

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
BAD_LINK = "确认链接无效"



@pytest.fixture
async def client(tmp_path: Path, catalog: Catalog) -> AsyncIterator[TestClient]:
    settings = Settings(store_url=f"sqlite:///{tmp_path}/ack.db", subscriber_key="k", tick_seconds=0,
                        admin_token=ADMIN_TOKEN, outbox_worker=False)
    client = TestClient(TestServer(create_app(settings, clock=ManualClock(T0), catalog=catalog)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def services_of(client: TestClient) -> Services:
    return client.app[SERVICES]  # type: ignore[index]


async def opened(client: TestClient) -> tuple[str, list[Delivery]]:
    """An incident whose version 1 went out (queued: no channel runs here), and its deliveries."""
    resp = await client.post("/api/incidents", json={"playbook": "broadband-outage", "region": "ningbo"},
                             headers=ADMIN_HEADERS)
    assert resp.status == 201, await resp.text()
    incident_id = (await resp.json())["id"]
    return incident_id, await services_of(client).store.deliveries(incident_id)


def link(client: TestClient, incident_id: str, version: int, person_id: str) -> str:
    claim = AckClaim(incident_id, version, person_id, T0 + timedelta(days=1))
    return f"/ack/{make_token(services_of(client).ack_secret, claim)}"


async def assert_refused(client: TestClient, path: str, incident_id: str) -> None:
    for method in ("GET", "POST"):
        resp = await client.request(method, path)
        assert 400 <= resp.status < 500, (method, resp.status)
        assert BAD_LINK in await resp.text()
    assert await services_of(client).store.acks(incident_id) == []  # the ack and its event are one write


async def test_a_recipients_link_acknowledges(client: TestClient) -> None:
    incident_id, deliveries = await opened(client)
    email = next(d for d in deliveries if d.key.channel == "email" and d.key.version == 1)
    path = link(client, incident_id, 1, email.key.person_id)
    page = await client.get(path)
    assert page.status == 200 and "确认收到" in await page.text()
    assert (await client.post(path)).status == 200
    acks = await services_of(client).store.acks(incident_id)
    assert [(a.person_id, a.version, a.via) for a in acks] == [(email.key.person_id, 1, "email")]


async def test_an_unknown_incident_writes_no_orphan_ack(client: TestClient) -> None:
    _, deliveries = await opened(client)
    email = next(d for d in deliveries if d.key.channel == "email")
    await assert_refused(client, link(client, "INC-20261124-nope", 1, email.key.person_id), "INC-20261124-nope")


async def test_a_version_that_does_not_exist(client: TestClient) -> None:
    incident_id, deliveries = await opened(client)
    email = next(d for d in deliveries if d.key.channel == "email")
    await assert_refused(client, link(client, incident_id, 7, email.key.person_id), incident_id)


async def test_a_contact_who_was_not_sent_the_version(client: TestClient, catalog: Catalog) -> None:
    incident_id, deliveries = await opened(client)
    reached = {d.key.person_id for d in deliveries if d.key.version == 1}
    outsider = next(p for p in sorted(catalog.contacts.people) if p not in reached)
    await assert_refused(client, link(client, incident_id, 1, outsider), incident_id)


async def test_a_person_who_is_not_a_contact(client: TestClient, catalog: Catalog) -> None:
    incident_id, _ = await opened(client)
    assert "mallory" not in catalog.contacts.people
    await assert_refused(client, link(client, incident_id, 1, "mallory"), incident_id)


async def test_a_role_holder_cannot_acknowledge_a_notice_by_link(client: TestClient) -> None:
    # Role notices carry no link (they are acknowledged by SMS reply or in the console):
    # version 0 names no version of the wording.
    incident_id, deliveries = await opened(client)
    notice = next(d for d in deliveries if d.key.version == 0)
    await assert_refused(client, link(client, incident_id, 0, notice.key.person_id), incident_id)


async def test_a_link_recipient_only_by_sms_is_refused(client: TestClient) -> None:
    # Links go out in email only: an SMS recipient never held one for that version.
    incident_id, deliveries = await opened(client)
    by_email = {d.key.person_id for d in deliveries if d.key.version == 1 and d.key.medium == "email"}
    sms_only = next(d.key.person_id for d in deliveries
                    if d.key.version == 1 and d.key.channel == "sms" and d.key.person_id not in by_email)
    await assert_refused(client, link(client, incident_id, 1, sms_only), incident_id)
