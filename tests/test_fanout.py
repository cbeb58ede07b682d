"""The official script to every frontline person in scope, end to end: the real twilio
client against the sandbox, a real SMTP server, signed callbacks and replies into the
service, acknowledgements by SMS and by link, and a provider error storm."""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any, AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from coordinator import publication as publication_module
from coordinator.app import create_app
from coordinator.channels.configured import sms_channel
from coordinator.config.catalog import Catalog
from coordinator.clock import ManualClock
from coordinator.errors import StoreError
from coordinator.models import DeliveryStatus
from coordinator.outbox import Wake
from coordinator.roster import audience
from coordinator.sandbox import (
    Delivery,
    Faults,
    SmtpInbox,
    TwilioSandbox,
    twilio_signature,
)
from coordinator.sandbox.faultproxy import FaultProxy, FaultRates
from coordinator.commands.sandboxed import free_port
from coordinator.config.settings import Settings
from coordinator.store import Store
from coordinator.web.state import SERVICES, Services

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

SID = "AC" + "1" * 32
TOKEN = "sandbox-auth-token"
FROM = "+15005550006"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)



class Env:
    def __init__(self, client: TestClient, sandbox: TwilioSandbox, inbox: SmtpInbox, public: str,
                 clock: ManualClock) -> None:
        self.client, self.sandbox, self.inbox, self.public, self.clock = client, sandbox, inbox, public, clock
        self.proxy: FaultProxy | None = None

    @property
    def services(self) -> Services:
        return self.client.app[SERVICES]  # type: ignore[index]

    async def trigger(self, playbook: str = "broadband-outage", region: str = "ningbo") -> dict[str, Any]:
        resp = await self.client.post("/api/incidents", json={"playbook": playbook, "region": region, "by": "chen-li"})
        assert resp.status == 201, await resp.text()
        return dict(await resp.json())

    async def settle(self) -> None:
        for _ in range(20):
            await self.services.outbox.drain()
            await self.sandbox.settled()
            if await self.services.store.outbox_size() == 0:
                return
            self.clock.advance(timedelta(minutes=2))  # lets backed-off retries fall due
        raise AssertionError("the outbox did not empty")


async def make_env(store: Store, catalog: Catalog, faults: Faults | None = None,
                   timeout: float = 10.0, fates: Delivery | None = None,
                   proxy: FaultRates | None = None) -> AsyncIterator[Env]:
    """The service against the sandbox and an SMTP inbox; `proxy`: the twilio client
    talks to the sandbox through a FaultProxy with these faults (`Env.proxy`)."""
    clock = ManualClock(T0)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    inbox = SmtpInbox(clock=clock)
    await inbox.start()
    sandbox = TwilioSandbox(SID, TOKEN, numbers=(FROM,), inbound_url=f"{public}/hooks/twilio/inbound", clock=clock,
                            seed=5, delivery=fates or Delivery(step_delay=0.005, receipt_delay=0.01), faults=faults,
                            inbox=inbox)
    await sandbox.start()
    between = FaultProxy(sandbox.base_url, proxy) if proxy is not None else None
    if between is not None:
        await between.start()
    host, smtp_port = inbox.address
    settings = Settings(
        public_url=public, subscriber_key="k", ack_secret="ack-secret", tick_seconds=0, outbox_worker=False,
        twilio_account_sid=SID, twilio_auth_token=TOKEN, twilio_from=FROM,
        twilio_base_url=between.base_url if between is not None else sandbox.base_url,
        smtp_host=host, smtp_port=smtp_port, smtp_from="yingji@example.com", twilio_timeout_seconds=timeout,
        admin_token=ADMIN_TOKEN,
    )
    server = TestServer(create_app(settings, clock=clock, store=store, catalog=catalog), port=port)
    client = TestClient(server, headers=ADMIN_HEADERS)
    await client.start_server()
    try:
        env = Env(client, sandbox, inbox, public, clock)
        env.proxy = between
        yield env
    finally:
        await client.close()
        if between is not None:
            await between.stop()
        await sandbox.stop()
        await inbox.stop()


@pytest.fixture
async def env(store: Store, catalog: Catalog) -> AsyncIterator[Env]:
    async for e in make_env(store, catalog):
        yield e


async def test_everyone_in_scope_gets_the_same_text_once(env: Env, catalog: Catalog) -> None:
    body = await env.trigger()
    await env.settle()
    incident = await env.services.store.get_incident(body["id"])
    v1 = incident.script(1)
    assert v1 is not None and v1.approved_by == "auto" and incident.status.value == "scripted"
    in_scope, left_out = audience(catalog.playbooks["broadband-outage"], catalog.contacts, "ningbo", date(2026, 11, 24))
    assert in_scope
    phones = [r.person.phone for r in in_scope if "sms" in r.channels]
    emails = [r.person.email for r in in_scope if "email" in r.channels]
    for phone in phones:
        got = env.sandbox.received_by(phone)  # type: ignore[arg-type]
        assert [m.body for m in got] == [v1.sms], phone
    for address in emails:
        [mail] = env.inbox.mailbox(address)  # type: ignore[arg-type]
        assert mail.subject == v1.email_subject and v1.email_text.strip() in mail.text
    # the do-not-contact list: people left out get nothing, a closed phone gets no SMS
    blocked_phone = "+8613900000027"
    assert env.sandbox.received_by(blocked_phone) == []
    for person_id in left_out:
        person = catalog.contacts.people[person_id]
        assert not person.phone or env.sandbox.received_by(person.phone) == []
    deliveries = [d for d in await env.services.store.deliveries(incident.id) if d.key.version == 1]
    assert {d.content_hash for d in deliveries} == {v1.content_hash}
    assert len(deliveries) == len(phones) + len(emails)
    sms = [d for d in deliveries if d.key.channel == "sms"]
    assert all(d.status == DeliveryStatus.delivered for d in sms), {d.status for d in sms}


async def test_replies_links_callbacks_and_stop(env: Env) -> None:
    body = await env.trigger()
    await env.settle()
    iid = body["id"]
    store = env.services.store
    sms = [d for d in await store.deliveries(iid) if d.key.channel == "sms"]
    first, second = sms[0], sms[1]
    # an SMS reply "1" acknowledges, and an SMS answers which incident it went to
    await env.sandbox.reply(first.address, FROM, "1")
    await env.sandbox.settled()
    acks = await store.acks(iid)
    assert [(a.person_id, a.version, a.via) for a in acks] == [(first.key.person_id, 1, "sms")]
    await env.settle()
    incident = await store.get_incident(iid)
    answer = env.sandbox.received_by(first.address)[-1].body
    assert answer.startswith("已确认：宽带大面积故障") and f"事件码{incident.code}" in answer and "口径v1" in answer
    # the email link: GET shows a button and acknowledges nothing; POST acknowledges
    email = next(d for d in await store.deliveries(iid) if d.key.channel == "email" and d.key.person_id != first.key.person_id)
    [mail] = env.inbox.mailbox(email.address)
    link = re.search(r"http://127\.0\.0\.1:\d+/ack/[\w.\-]+", mail.text)
    assert link is not None
    path = link.group(0).removeprefix(env.public)
    page = await env.client.get(path)
    assert page.status == 200 and "确认收到" in await page.text()
    assert len(await store.acks(iid)) == 1
    assert (await env.client.post(path)).status == 200
    assert (email.key.person_id, "email") in {(a.person_id, a.via) for a in await store.acks(iid)}
    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert (await env.client.post(forged)).status == 403
    # a forged status callback is refused; a late duplicate changes nothing
    callback = {"MessageSid": first.provider_id or "", "MessageStatus": "sent", "AccountSid": SID}
    resp = await env.client.post("/hooks/twilio/status", data=callback, headers={"X-Twilio-Signature": "forged"})
    assert resp.status == 403
    signature = twilio_signature(TOKEN, f"{env.public}/hooks/twilio/status", callback)
    resp = await env.client.post("/hooks/twilio/status", data=callback, headers={"X-Twilio-Signature": signature})
    assert resp.status == 204
    stored = await store.get_delivery(first.key)
    assert stored is not None and stored.status == DeliveryStatus.delivered
    # a forged reply is refused
    reply = {"From": second.address, "To": FROM, "Body": "1", "AccountSid": SID}
    assert (await env.client.post("/hooks/twilio/inbound", data=reply,
                                  headers={"X-Twilio-Signature": "x"})).status == 403
    # STOP is honoured by the provider and mirrored here: the next version skips SMS for them
    await env.sandbox.reply(second.address, FROM, "STOP")
    await env.sandbox.settled()
    assert second.address in await store.opted_out()
    resp = await env.client.post(f"/api/incidents/{iid}/scripts", json={"params": {"cause": "光缆被挖断"}, "by": "chen-li"})
    assert resp.status == 201 and (await resp.json())["supersedes"] == 1
    await env.settle()
    scripts = [m.body for m in env.sandbox.received_by(first.address) if "统一口径" in m.body]
    assert [body.count("此口径替代v1") for body in scripts] == [0, 1]
    assert len(env.sandbox.received_by(second.address)) == 1
    v2_emails = [d for d in await store.deliveries(iid) if d.key.version == 2 and d.key.person_id == second.key.person_id]
    assert [d.key.channel for d in v2_emails] == ["email"]


async def test_resolution_sends_the_stand_down(env: Env) -> None:
    body = await env.trigger()
    await env.settle()
    resp = await env.client.post(f"/api/incidents/{body['id']}/resolve", json={"by": "chen-li", "note": "已恢复"})
    assert resp.status == 200
    await env.settle()
    incident = await env.services.store.get_incident(body["id"])
    stand_down = incident.scripts[-1]
    assert stand_down.kind.value == "stand_down" and stand_down.approved
    phones = {d.address for d in await env.services.store.deliveries(body["id"]) if d.key.channel == "sms"}
    assert all(env.sandbox.received_by(p)[-1].body == stand_down.sms for p in phones)
    board = await (await env.client.get(f"/api/incidents/{body['id']}/deliveries")).json()
    assert board["current_version"] == 1 and set(board["counts"]) == {"0", "1", "2"}  # 0: role notices


async def test_an_error_storm_still_reaches_everyone_once(store: Store, catalog: Catalog) -> None:
    # 30% of requests go wrong: 429, 500 before anything is created, or an answer so slow
    # the client gives up although the message was created
    storm = Faults(too_many_requests_rate=0.1, server_error_rate=0.1, slow_rate=0.1, slow_seconds=0.6)
    async for env in make_env(store, catalog, faults=storm, timeout=0.2):
        body = await env.trigger(region="*")
        await env.settle()
        assert set(env.sandbox.faults_injected) == {"too_many_requests", "server_error", "slow"}
        deliveries = await store.deliveries(body["id"])
        sms = [d for d in deliveries if d.key.channel == "sms"]
        assert sms and all(d.status in (DeliveryStatus.delivered, DeliveryStatus.sent) for d in sms)
        assert any(d.attempts > 0 for d in sms), "the storm caused no retry"
        for d in sms:
            assert len(env.sandbox.received_by(d.address)) == 1, d.address  # exactly once, timeouts included
        slow = [m for m in env.sandbox.messages if m.to in {d.address for d in sms}]
        assert len(slow) == len(sms)


async def test_a_dead_workers_claims_are_taken_over(env: Env) -> None:
    store = env.services.store
    outbox = env.services.outbox
    body = await env.trigger()
    claimed = await store.claim_deliveries("crashed-worker", env.services.clock.now(), 60, 5)
    assert len(claimed) == 5
    await outbox.drain()
    assert await store.outbox_size() == 5  # still leased to the dead worker
    env.clock.advance(timedelta(seconds=61))
    await env.settle()
    deliveries = await store.deliveries(body["id"])
    assert all(d.status != DeliveryStatus.queued for d in deliveries)
    for d in deliveries:
        if d.key.channel == "sms":
            assert len(env.sandbox.received_by(d.address)) == 1


async def test_an_sms_sent_by_a_worker_that_died_before_recording_it_is_not_sent_again(env: Env) -> None:
    store = env.services.store
    body = await env.trigger()
    [dead] = await store.claim_deliveries("crashed-worker", env.clock.now(), 60, 1, medium="sms")
    assert dead.claimed_at == env.clock.now()
    text = dead.text or (await env.services.messages.content(dead)).sms
    # The dead worker's own channel (another process: this one knows nothing of it) got
    # the message to Twilio; then the worker died before recording that.
    channel = sms_channel(env.services.settings, env.clock)
    try:
        await channel.send_sms(dead.key.as_id(), dead.address, text)
    finally:
        await channel.close()
    env.clock.advance(timedelta(seconds=61))
    await env.settle()
    assert [m.body for m in env.sandbox.received_by(dead.address)].count(text) == 1
    [stored] = [d for d in await store.deliveries(body["id"]) if d.key == dead.key]
    assert stored.status in (DeliveryStatus.sent, DeliveryStatus.delivered)


def dies_after_two_chunks(monkeypatch: pytest.MonkeyPatch, store: Store, why: str) -> Any:
    """Publications in chunks of 3 people, and a store whose third chunk fails with
    StoreError(why), as the writer dying there would leave it. Returns the store's own
    add_deliveries, to put back."""
    monkeypatch.setattr(publication_module, "FIRST_CHUNK", 3)
    monkeypatch.setattr(publication_module, "PUBLISH_CHUNK", 3)
    writes = 0
    add_deliveries = store.add_deliveries

    async def dies(deliveries: Any) -> int:
        nonlocal writes
        writes += 1
        if writes > 2:
            raise StoreError(why)
        return await add_deliveries(deliveries)

    monkeypatch.setattr(store, "add_deliveries", dies)
    return add_deliveries


async def test_a_half_written_publication_is_finished_on_restart(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = env.services.store
    add_deliveries = dies_after_two_chunks(monkeypatch, store, "the service stopped")
    resp = await env.client.post("/api/incidents", json={"playbook": "broadband-outage", "region": "ningbo",
                                                         "by": "chen-li"})
    assert resp.status >= 500
    [incident] = await store.list_incidents()
    written = len([d for d in await store.deliveries(incident.id) if d.key.version == 1])
    assert written > 0
    monkeypatch.setattr(store, "add_deliveries", add_deliveries)

    # the stopped service's claim on the publication lapses first (a live one renews it)
    assert await env.services.pipeline.publication.resume_publishing() == 0
    env.clock.advance(timedelta(seconds=publication_module.PUBLISH_LEASE_SECONDS + 1))
    created = await env.services.pipeline.publication.resume_publishing()
    v1 = [d for d in await store.deliveries(incident.id) if d.key.version == 1]
    assert created == len(v1) - written > 0
    sent = [e for e in await store.timeline(incident.id) if e.kind == "script_sent"]
    assert [e.data["version"] for e in sent] == [1]
    assert await env.services.pipeline.publication.resume_publishing() == 0  # published now: nothing to finish
    await env.settle()
    for d in v1:
        if d.key.channel == "sms":
            assert len(env.sandbox.received_by(d.address)) == 1


async def test_unacknowledged_staff_are_reminded_then_their_supervisors_told(env: Env, catalog: Catalog) -> None:
    body = await env.trigger()  # broadband-outage: remind after 10m, supervisors after 20m
    await env.settle()
    iid = body["id"]
    store = env.services.store
    sms = sorted((d for d in await store.deliveries(iid) if d.key.channel == "sms"), key=lambda d: d.key.person_id)
    acked = sms[: len(sms) // 2]
    for d in acked:
        await env.sandbox.reply(d.address, FROM, "确认")
    await env.sandbox.settled()
    env.clock.advance(timedelta(minutes=10))
    ran = [step.key for _, step in await env.services.pipeline.tick()]
    assert "audience_reminder:1" in ran
    await env.settle()
    acked_people = {d.key.person_id for d in acked}
    for d in sms:
        bodies = [m.body for m in env.sandbox.received_by(d.address)]
        reminded = any("【提醒】" in b for b in bodies)
        assert reminded == (d.key.person_id not in acked_people), d.key.person_id
    env.clock.advance(timedelta(minutes=10))
    assert "audience_supervisor:1" in [step.key for _, step in await env.services.pipeline.tick()]
    await env.settle()
    notices = [d for d in await store.deliveries(iid) if d.key.channel.endswith("-supervisor")]
    assert notices
    waiting_names = {catalog.contacts.people[d.key.person_id].name for d in sms if d.key.person_id not in acked_people}
    told = " ".join(d.text or "" for d in notices)
    assert all(name in told for name in waiting_names if catalog.contacts.people)
    assert all(catalog.contacts.people[d.key.person_id].name not in told for d in acked)
    assert await env.services.pipeline.tick() == []  # each fires once



async def test_role_holders_are_told_and_acknowledge_by_reply(env: Env, catalog: Catalog) -> None:
    body = await env.trigger()
    await env.settle()
    store = env.services.store
    notices = [d for d in await store.deliveries(body["id"]) if d.key.version == 0]
    holders = {r["role"]: r["holder"] for r in body["roles"]}
    assert {d.key.channel.split("-role-")[1] for d in notices} == {f"{role}-assigned" for role in holders}
    leader = catalog.contacts.people[holders["leader"]]
    assert leader.phone is not None
    [message] = env.sandbox.received_by(leader.phone)
    assert "应急领导小组组长" in message.body and "回复1确认" in message.body
    await env.sandbox.reply(leader.phone, FROM, "1")
    await env.sandbox.settled()
    incident = await store.get_incident(body["id"])
    assert incident.role("leader").acked_by == leader.id  # type: ignore[union-attr]
    assert incident.acknowledged_at is not None
    # the others stay unacknowledged: after their deadline the backups are told
    env.clock.advance(timedelta(minutes=15))
    await env.services.pipeline.tick()
    await env.settle()
    escalated = [d.key.channel for d in await store.deliveries(body["id"]) if d.key.channel.endswith("-level1")]
    assert escalated and not any("-role-leader-" in c for c in escalated)  # the leader acknowledged


async def test_the_first_chunk_is_claimed_before_the_rest_is_written(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an outbox worker in the process, a publication lets its first chunk be claimed
    (and start leaving) before it writes the next: the rest of a large audience must not
    queue ahead of the first messages."""
    store, outbox = env.services.store, env.services.outbox
    monkeypatch.setattr(publication_module, "FIRST_CHUNK", 3)
    monkeypatch.setattr(publication_module, "PUBLISH_CHUNK", 3)
    calls: list[str] = []
    add_deliveries, claim_deliveries = store.add_deliveries, store.claim_deliveries

    async def add(deliveries: Any) -> int:
        if deliveries and deliveries[0].key.version == 1:
            calls.append("write")
        return await add_deliveries(deliveries)

    async def claim(*args: Any, **kwargs: Any) -> Any:
        claimed = await claim_deliveries(*args, **kwargs)
        calls.append(f"claim {kwargs['medium']}")
        return claimed

    monkeypatch.setattr(store, "add_deliveries", add)
    monkeypatch.setattr(store, "claim_deliveries", claim)
    stop = asyncio.Event()
    worker = asyncio.create_task(outbox.run(stop, idle_seconds=0.05))
    try:
        await env.trigger()
    finally:
        stop.set()
        outbox.wake.set()
        await worker
    first, second = [i for i, call in enumerate(calls) if call == "write"][:2]
    assert {"claim sms", "claim email"} <= set(calls[first + 1:second])


async def test_waiting_for_a_claim_with_no_claim_loop_returns_at_once() -> None:
    wake = Wake()
    wake.set()
    await asyncio.wait_for(wake.taken(60), 1)  # no loop runs in this process
    wake.claimed("sms", wake.claiming("sms"))
    wake.set()
    waiting = asyncio.create_task(wake.taken(60))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # the sms loop has not claimed since the wake
    wake.claimed("sms", wake.claiming("sms"))
    await asyncio.wait_for(waiting, 1)
    wake.set()
    await asyncio.wait_for(wake.taken(0.01), 1)  # bounded by its timeout
