"""DingTalk and WeCom wired into the service (issue 19), end to end on loopback: the
playbook's audience goes `[dingtalk, sms, email]` (or WeCom first) in turn; cards go out
in the vendor's chunks through the sandboxes; a card's button acknowledges exactly that
person; a forged or replayed press is refused (403) and changes nothing; DingTalk's read
state moves deliveries to `read`; a person who has not read within `next_channel_after`
gets the SMS exactly once, one who acknowledged gets nothing more."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from coordinator.app import create_app
from coordinator.clock import ManualClock
from coordinator.commands.sandboxed import free_port
from coordinator.config.catalog import Catalog
from coordinator.config.schemas import Audience
from coordinator.config.settings import Settings
from coordinator.models import DeliveryStatus, Medium
from coordinator.sandbox.dingtalk import DingTalkSandbox
from coordinator.sandbox.smsc import SandboxSmsc
from coordinator.sandbox.smtp import SmtpInbox
from coordinator.sandbox.wecom import WeComSandbox
from coordinator.store import Store
from coordinator.web.state import SERVICES, Services

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
WAIT = timedelta(minutes=10)
AES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
PLAYBOOK = "broadband-outage"


def with_messengers(catalog: Catalog, first: str) -> Catalog:
    """Every person gets a DingTalk and a WeCom userid; the playbook's audience goes
    `first` (dingtalk or wecom), then SMS, then email, in turn."""
    people = {pid: p.model_copy(update={"dingtalk_userid": f"dt-{pid}", "wecom_userid": f"wc-{pid}"})
              for pid, p in catalog.contacts.people.items()}
    playbook = catalog.playbooks[PLAYBOOK]
    audience = Audience.model_validate({**playbook.audience.model_dump(mode="json"), "channels": [first, "sms", "email"],
                                        "order": "in_turn", "next_channel_after": "10m"})
    return dataclasses.replace(
        catalog, contacts=dataclasses.replace(catalog.contacts, people=people),
        playbooks={**catalog.playbooks, PLAYBOOK: playbook.model_copy(update={"audience": audience})})


@dataclass
class World:
    services: Services
    client: TestClient
    clock: ManualClock
    dingtalk: DingTalkSandbox
    wecom: WeComSandbox
    smsc: SandboxSmsc

    async def drain(self) -> None:
        assert self.services.messengers is not None
        await self.services.messengers.outbox.drain()
        await self.services.outbox.drain()


async def world(store: Store, catalog: Catalog, first: str) -> AsyncIterator[World]:
    clock = ManualClock(T0)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    users = [f"dt-{p}" for p in catalog.contacts.people]
    dingtalk = DingTalkSandbox("app-key", "app-secret", 42, users=users, clock=clock, calls_per_second=None, seed=1)
    wecom = WeComSandbox("corp", "corp-secret", 7, users=[f"wc-{p}" for p in catalog.contacts.people], clock=clock,
                         callback_url=f"{public}/hooks/wecom", callback_token="tok", encoding_aes_key=AES, seed=2)
    await dingtalk.start()
    await wecom.start()
    smsc = await SandboxSmsc(clock=clock, receipt_delay=3600).start()
    inbox = SmtpInbox(clock=clock)
    await inbox.start()
    host, smtp_port = inbox.address
    settings = Settings(public_url=public, subscriber_key="k", ack_secret="a", tick_seconds=0, outbox_worker=False,
                        admin_token=ADMIN_TOKEN, smpp_host="127.0.0.1", smpp_port=smsc.port, smpp_system_id="sandbox",
                        smpp_password="secret", smpp_source_addr="1065712345", smtp_host=host, smtp_port=smtp_port,
                        dingtalk_app_key="app-key", dingtalk_app_secret="app-secret", dingtalk_agent_id=42,
                        dingtalk_base_url=dingtalk.base_url, wecom_corp_id="corp", wecom_secret="corp-secret",
                        wecom_agent_id=7, wecom_callback_token="tok", wecom_encoding_aes_key=AES,
                        wecom_base_url=wecom.base_url)
    app = create_app(settings, clock=clock, store=store, catalog=with_messengers(catalog, first))
    client = TestClient(TestServer(app, port=port), headers=ADMIN_HEADERS)
    await client.start_server()
    try:
        yield World(client.app[SERVICES], client, clock, dingtalk, wecom, smsc)  # type: ignore[index]
    finally:
        await client.close()
        await inbox.stop()
        await smsc.stop()
        await wecom.stop()
        await dingtalk.stop()


@pytest.fixture
async def on_dingtalk(store: Store, catalog: Catalog) -> AsyncIterator[World]:
    async for w in world(store, catalog, "dingtalk"):
        yield w


@pytest.fixture
async def on_wecom(store: Store, catalog: Catalog) -> AsyncIterator[World]:
    async for w in world(store, catalog, "wecom"):
        yield w


async def test_dingtalk_card_read_state_and_sms_to_who_has_not_read(on_dingtalk: World) -> None:
    w = on_dingtalk
    opened = await w.services.pipeline.trigger(PLAYBOOK, region="ningbo", actor="chen-li")
    incident = opened.incident
    await w.drain()
    cards = [d for d in await w.services.store.deliveries(incident.id) if d.key.is_script]
    assert cards and {d.key.medium for d in cards} == {Medium.dingtalk}  # the messenger first, nothing else yet
    assert all(d.status == DeliveryStatus.sent and d.provider_id for d in cards)
    # One asyncsend_v2 call carries up to 100 of them: the task id is shared.
    tasks = {d.provider_id.split(":")[0] for d in cards if d.provider_id}
    assert len(tasks) == -(-len(cards) // 100)
    reader, presser, silent = cards[0].key.person_id, cards[1].key.person_id, cards[2].key.person_id
    w.dingtalk.mark_read(f"dt-{reader}", int(next(iter(tasks))))
    assert w.services.messengers is not None
    await w.services.messengers.reads.poll_once()
    after = {d.key.person_id: d for d in await w.services.store.deliveries(incident.id) if d.key.is_script}
    assert after[reader].status == DeliveryStatus.read
    assert after[silent].status == DeliveryStatus.delivered  # unread, but in their DingTalk
    # Read state only moves forward: another poll with DingTalk saying the same changes nothing.
    w.clock.advance(timedelta(minutes=1))
    assert await w.services.messengers.reads.poll_once() == 0

    # The report's read figures and the board's per-person rows agree with the sandbox.
    report = (await (await w.client.get(f"/api/incidents/{incident.id}/report")).json())
    dingtalk = next(c for c in report["delivery"] if c["channel"] == "dingtalk")
    sandbox_read = sum(len(t.read) for t in w.dingtalk.tasks.values())
    assert dingtalk["read"] == sandbox_read == 1 and dingtalk["read_rate"] == 1 / len(cards)
    assert dingtalk["median_seconds_to_read"] is not None
    rows = {row["person_id"]: row for row in report["people"]}
    assert rows[reader]["channels"] == [{"medium": "dingtalk", "status": "read", "at": rows[reader]["channels"][0]["at"]}]
    page = await (await w.client.get(f"/incidents/{incident.id}")).text()
    assert f'data-person="{reader}"' in page and 'data-medium="dingtalk" data-status="read"' in page
    # the version's board counts the DingTalk cards and their reads beside SMS and email
    row = page[page.index('<tr data-channel="dingtalk">'):]
    row = row[:row.index("</tr>")]
    cells = [c.split(">", 1)[1] for c in row.split("<td")[1:]]
    assert cells[0].startswith("钉钉") and cells[1].startswith(str(len(cards))) and cells[5].startswith("1<")
    assert "钉钉 已读" in page
    html_report = await (await w.client.get(f"/api/incidents/{incident.id}/report?format=html")).text()
    assert 'data-read-channel="dingtalk"' in html_report

    # The page the card opens acknowledges nothing by itself; its script, DingTalk's JSAPI, is served from here.
    link0 = URL(w.dingtalk.cards_for(f"dt-{presser}")[-1][1]["action_card"]["single_url"]).path
    page = await w.client.get(link0)
    assert page.status == 200 and "/static/dingtalk-jsapi.js" in await page.text()
    assert await w.services.store.acks(incident.id) == []
    jsapi = await w.client.get("/static/dingtalk-jsapi.js")
    assert jsapi.status == 200 and "requestAuthCode" in await jsapi.text()
    # The presser opens the card's link inside DingTalk: acknowledged, that person only.
    status, body = await w.dingtalk.click(f"dt-{presser}")
    assert status == 200, body
    acks = await w.services.store.acks(incident.id)
    assert [(a.person_id, a.version, a.via) for a in acks] == [(presser, 1, "dingtalk")]
    report = (await (await w.client.get(f"/api/incidents/{incident.id}/report")).json())
    assert {r["person_id"]: r["acked_via"] for r in report["people"]}[presser] == "dingtalk"
    # The same link without a code DingTalk issued acknowledges no one.
    link = w.dingtalk.cards_for(f"dt-{silent}")[-1][1]["action_card"]["single_url"]
    refused = await w.client.post(URL(link).path, data={"code": "made-up"})
    assert refused.status == 403
    forged = await w.client.post(f"/hooks/dingtalk/ack/{link.rsplit('/', 1)[1][:-3]}abc", data={"code": "x"})
    assert forged.status == 403
    assert len(await w.services.store.acks(incident.id)) == 1

    # Not read within next_channel_after: the SMS, exactly once; the reader and the presser get none.
    w.clock.advance(WAIT)
    await w.services.pipeline.tick()
    w.clock.advance(WAIT / 2)
    await w.services.pipeline.tick()  # nothing new: a step runs once
    await w.drain()
    sms = [d for d in await w.services.store.deliveries(incident.id) if d.key.is_script and d.key.medium == Medium.sms]
    smsed = [d.key.person_id for d in sms]
    assert silent in smsed and len(smsed) == len(set(smsed))
    assert reader not in smsed and presser not in smsed
    assert len(smsed) == len(cards) - 2

    # Twice the wait: the SMS was not delivered either (the SMSC holds its receipts): the
    # email, once; past supervisor_after (20 min) the supervisors hear of who is still
    # waiting; nothing more to the presser or the reader's DingTalk-only turn.
    w.clock.advance(WAIT)
    await w.services.pipeline.tick()
    await w.services.pipeline.tick()
    await w.drain()
    scripts = [d for d in await w.services.store.deliveries(incident.id) if d.key.is_script]
    emailed = [d.key.person_id for d in scripts if d.key.medium == Medium.email]
    assert silent in emailed and len(emailed) == len(set(emailed)) and presser not in emailed
    everything = await w.services.store.deliveries(incident.id)
    assert len([d for d in everything if d.key.person_id == silent and d.key.medium == Medium.sms]) == 1
    reminded = [d for d in everything if d.key.person_id == silent and d.key.notice == "reminder"]
    assert [d.key.medium for d in reminded] == [Medium.dingtalk]  # on the channel in use: no second SMS
    told = [e for e in await w.services.store.timeline(incident.id) if e.kind == "audience_supervisor"]
    assert told and silent in told[0].data["not_acknowledged"] and presser not in told[0].data["not_acknowledged"]
    chased = [d for d in await w.services.store.deliveries(incident.id) if d.key.person_id == presser
              and (d.key.notice == "reminder" or (d.key.is_script and d.key.medium != Medium.dingtalk))]
    assert chased == []  # one card, one press: no other channel, no reminder (a supervisor's own notices aside)


async def test_wecom_press_acknowledges_and_greys_the_card_and_a_replay_is_refused(on_wecom: World) -> None:
    w = on_wecom
    assert await w.wecom.check_callback_url()  # the GET with echostr that saving the settings does
    opened = await w.services.pipeline.trigger(PLAYBOOK, region="ningbo", actor="chen-li")
    incident = opened.incident
    await w.drain()
    cards = [d for d in await w.services.store.deliveries(incident.id) if d.key.is_script]
    assert cards and {d.key.medium for d in cards} == {Medium.wecom}
    assert len({d.provider_id.split(":")[0] for d in cards if d.provider_id}) == 1  # one call, touser joined by |
    presser = cards[0].key.person_id
    task_id = w.wecom.cards[-1].task_id
    assert task_id is not None
    attempt = await w.wecom.click(f"wc-{presser}", task_id)
    assert attempt.status == 200
    assert w.services.messengers is not None
    await w.services.messengers.acks.settle()
    assert w.wecom.card(f"wc-{presser}", task_id).replaced == {f"wc-{presser}": "已确认"}
    acks = await w.services.store.acks(incident.id)
    assert [(a.person_id, a.version, a.via) for a in acks] == [(presser, 1, "wecom")]
    # The same callback again (a replay): 403, nothing changes.
    replay = await w.client.post(URL(attempt.url).path_qs, data=attempt.sent.encode(),
                                 headers={"Content-Type": "text/xml"})
    assert replay.status == 403
    # A forged one (a body not sealed with our key): 403.
    forged = await w.client.post("/hooks/wecom?msg_signature=x&timestamp=1&nonce=2", data=b"<xml><Encrypt>abc</Encrypt></xml>")
    assert forged.status == 403
    assert len(await w.services.store.acks(incident.id)) == 1
    # WeCom reports no read state: those who did not press get the SMS after the wait; the presser nothing.
    w.clock.advance(WAIT)
    await w.services.pipeline.tick()
    await w.drain()
    smsed = [d.key.person_id for d in await w.services.store.deliveries(incident.id)
             if d.key.is_script and d.key.medium == Medium.sms]
    assert presser not in smsed and len(smsed) == len(cards) - 1
