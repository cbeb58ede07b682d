"""`coordinator demo`: the whole story once, on the embedded store, against the sandbox
(Twilio-compatible SMS API and SMTP inbox on loopback).

Three days of ordinary broadband complaints teach the detector; then complaints surge
in one region, the incident opens, roles are assigned, the script goes to every
frontline person in scope by SMS and email, part of them acknowledge, the rest are
reminded and their supervisors told, a role escalates, the leader resolves and the
stand-down goes out. Domain time runs on a clock the demo moves (twenty minutes of
escalation in a second); the HTTP, SMS and email traffic is real."""

from __future__ import annotations

import asyncio
import random
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import aiohttp

from ..clock import ManualClock
from ..config.catalog import load_catalog
from ..sampling import poisson
from ..sandbox import Delivery, SmtpInbox, TwilioSandbox
from ..sandbox.messengers import MessengerSandboxes
from ..sandbox.phones import SmscPhones
from .demo_messengers import press_cards, with_messenger_staff
from ..web.state import Services
from .sandboxed import sandboxed_service

REGION = "ningbo"
CATEGORY = "broadband"


@dataclass
class Check:
    what: str
    ok: bool
    detail: str = ""


@dataclass
class DemoResult:
    checks: list[Check] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(what, ok, detail))

    def say(self, line: str) -> None:
        self.lines.append(line)


def _history(start: datetime, days: int, rng: random.Random) -> list[dict[str, Any]]:
    """Ordinary complaint traffic: broadband in three regions with a daily rhythm."""
    items = []
    for b in range(days * 288):
        at = start + timedelta(minutes=5 * b)
        hour = (at.hour + 8) % 24  # local time in Shanghai
        rate = 0.4 + 0.8 * (8 <= hour <= 22)
        for region in ("hangzhou", "ningbo", "wenzhou"):
            for k in range(poisson(rng, rate)):
                items.append(_complaint(f"hist-{region}-{b}-{k}", at + timedelta(seconds=rng.randrange(300)),
                                        region, rng))
    return items



def _complaint(cid: str, at: datetime, region: str, rng: random.Random, channel: str = "hotline") -> dict[str, Any]:
    return {"id": cid, "received_at": at.isoformat(), "channel": channel, "category": CATEGORY, "region": region,
            "subscriber": f"1380000{rng.randrange(10000):04d}", "text": "家里宽带断网，光猫LOS灯红"}


async def run_demo(config_dir: Path, store_path: Path, say: Callable[[str], None] = print,
                   keep_running: float = 0.0, sms: str = "twilio") -> DemoResult:
    """The story once; `sms`: "twilio" (the Twilio-compatible sandbox) or "smpp" (the
    operator's route: SMPP to the sandbox SMSC)."""
    result = DemoResult()
    rng = random.Random(2026)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    clock = ManualClock(now)
    catalog = with_messenger_staff(load_catalog(config_dir))
    delivery = Delivery(step_delay=0.02, receipt_delay=0.05)
    async with sandboxed_service(catalog, config_dir, store_path, clock, seed=7, delivery=delivery, sms=sms) as up:
        services, sandbox, inbox, public = up.services, up.sandbox, up.inbox, up.public
        async with aiohttp.ClientSession(base_url=public,
                                         headers={"Authorization": f"Bearer {up.settings.admin_token}"}) as http:
            await _story(services, sandbox, up.number, inbox, http, clock, rng, result, say, up.messengers)
        say("")
        say(f"service:  {public}  (API: {public}/api/incidents, {public}/api/streams)")
        say(f"sandbox:  SMS {sandbox.base_url}, SMTP inbox {inbox.address[0]}:{inbox.address[1]}")
        say("          to read what every phone and mailbox received and reply as staff: `coordinator serve "
            "--sandbox`, sign in as a trainer, open /sandbox/")
        if keep_running > 0:
            say(f"admin token for the API (this run only): {up.settings.admin_token}")
            say(f"keeping both up for {keep_running:.0f} s (Ctrl-C to stop)")
            await asyncio.sleep(keep_running)
    return result


async def _story(services: Services, sandbox: TwilioSandbox | SmscPhones, number: str, inbox: SmtpInbox,
                 http: aiohttp.ClientSession, clock: ManualClock, rng: random.Random, result: DemoResult,
                 say: Callable[[str], None], messengers: MessengerSandboxes) -> None:
    store = services.store
    now = clock.now()

    say("1. history: three days of ordinary broadband complaints in 杭州, 宁波, 温州")
    history = _history(now - timedelta(days=3), 3, rng)
    for i in range(0, len(history), 2000):
        await services.intake.submit(list(enumerate(history[i:i + 2000], start=1)))
    await services.pipeline.catch_up()
    say(f"   {len(history)} complaints stored, each stream's baseline learned")

    say(f"2. surge: broadband complaints pour in from {REGION} (an OLT has failed)")
    opened_after = None
    for n in range(80):
        clock.advance(timedelta(seconds=4))
        channel = "regulator" if n == 30 else rng.choice(["hotline", "hotline", "app", "shop"])
        async with http.post("/api/complaints", json=_complaint(f"surge-{n}", clock.now(), REGION, rng, channel)) as r:
            assert r.status == 200, await r.text()
        if opened_after is None and await store.list_incidents(open_only=True):
            opened_after = n + 1
            say(f"   the incident opened on complaint {opened_after} of the surge")
    incidents = await store.list_incidents()
    result.check("a surge opened exactly one incident", len(incidents) == 1, f"{len(incidents)} incident(s)")
    if len(incidents) != 1:
        return
    incident = incidents[0]
    say(f"   {incident.id}: {incident.title} [{incident.severity}] region {incident.region}, "
        f"surge {incident.surge.observed if incident.surge else '?'} vs {incident.surge.expected if incident.surge else '?'} expected")

    say("3. roles from the roster and the on-call rotation")
    people = services.catalog.contacts.people
    for role in incident.roles:
        say(f"   {role.title}: {people[role.holder].name if role.holder else '—'}  (acknowledge within "
            f"{role.ack_within_seconds // 60} min)")
    result.check("roles assigned", all(r.holder for r in incident.roles))

    say("4. the official script v1 to every frontline person in scope, by SMS and email")
    await _settle(services, sandbox)
    incident = await store.get_incident(incident.id)
    v1 = incident.script(1)
    deliveries = [d for d in await store.deliveries(incident.id) if d.key.version == 1]
    sms = [d for d in deliveries if d.key.is_script and d.key.medium == "sms"]
    email = [d for d in deliveries if d.key.is_script and d.key.medium == "email"]
    identical = v1 is not None and all(d.content_hash == v1.content_hash for d in deliveries)
    if v1 is not None:
        say(f"   SMS ({v1.sms_segments} {v1.sms_encoding} segments): {v1.sms}")
    say(f"   {len(sms)} SMS and {len(email)} emails; statuses: " + _statuses(deliveries))
    received = sum(1 for d in sms if sandbox.received_by(d.address))
    mailed = sum(1 for d in email if inbox.mailbox(d.address))
    result.check("script v1 sent to everyone in scope", bool(sms) and received == len(sms) and mailed == len(email),
                 f"{received}/{len(sms)} phones, {mailed}/{len(email)} mailboxes")
    result.check("every recipient got the same text", identical)
    cards = [d for d in deliveries if d.key.is_script and d.key.medium in ("dingtalk", "wecom")]
    say(f"   and {len(cards)} messenger cards (DingTalk, WeCom) to those with a userid: " + _statuses(cards))
    result.check("messenger cards sent", bool(cards) and all(d.provider_id for d in cards), f"{len(cards)} cards")

    say("5. part of the frontline acknowledges (SMS reply 1 / 确认, or the email link)")
    repliers = sms[: len(sms) * 3 // 5]
    for d in repliers:
        await sandbox.reply(d.address, number, rng.choice(["1", "确认"]))
    await sandbox.settled()
    pressed = await press_cards(messengers, cards, {d.key.person_id for d in repliers}, say)
    acks = [a for a in await store.acks(incident.id) if a.version == 1]
    say(f"   {len(acks)} of {len({d.key.person_id for d in deliveries})} people acknowledged v1")
    result.check("acknowledgements recorded", len(acks) == len(repliers) + pressed,
                 f"{len(acks)} recorded for {len(repliers)} SMS replies and {pressed} card presses")

    say("6. time passes: nobody else answers")
    clock.advance(timedelta(minutes=16))
    await services.pipeline.tick()
    await _settle(services, sandbox)
    clock.advance(timedelta(minutes=10))
    await services.pipeline.tick()
    await _settle(services, sandbox)
    timeline = await store.timeline(incident.id)
    kinds = [e.kind for e in timeline]
    for event in timeline:
        if event.kind == "escalated":
            step = event.data
            say(f"   role {step['role']} escalated: {people[step['from']].name} → {people[step['to']].name}")
    reminders = [e for e in timeline if e.kind == "audience_reminder"]
    told = [e for e in timeline if e.kind == "audience_supervisor"]
    if reminders:
        say(f"   reminders sent to {len(reminders[0].data['not_acknowledged'])} people who had not acknowledged")
    if told:
        say(f"   their supervisors told: {told[0].data['messages']} notice(s)")
    result.check("escalation fired for the rest", "escalated" in kinds and bool(reminders) and bool(told))

    say("7. the leader resolves; the stand-down goes out")
    leader = incident.roles[0].holder or "leader"
    async with http.post(f"/api/incidents/{incident.id}/resolve", json={"by": leader, "note": "OLT板卡更换完成"}) as r:
        result.check("incident resolved", r.status == 200)
    await _settle(services, sandbox)
    incident = await store.get_incident(incident.id)
    stand_down = incident.scripts[-1] if incident.scripts else None
    down = [d for d in await store.deliveries(incident.id) if stand_down and d.key.version == stand_down.version]
    if stand_down is not None:
        say(f"   stand-down v{stand_down.version}: {stand_down.sms}")
    result.check("stand-down sent", stand_down is not None and stand_down.kind.value == "stand_down" and bool(down),
                 f"{len(down)} deliveries")
    say("")
    say("summary")
    for check in result.checks:
        say(f"   [{'ok' if check.ok else 'FAILED'}] {check.what}" + (f" ({check.detail})" if check.detail else ""))


def _statuses(deliveries: list[Any]) -> str:
    counts: dict[str, int] = {}
    for d in deliveries:
        counts[d.status.value] = counts.get(d.status.value, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"


async def _settle(services: Services, sandbox: TwilioSandbox | SmscPhones) -> None:
    """Wait until the outbox is empty and every provider callback has landed."""
    for _ in range(200):
        await services.outbox.drain()
        if services.messengers is not None:
            await services.messengers.outbox.drain()
        await sandbox.settled()
        if await services.store.outbox_size() == 0:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the outbox did not empty")


def main(config_dir: Path, keep_running: float, sms: str = "twilio") -> int:
    with tempfile.TemporaryDirectory(prefix="coordinator-demo-") as tmp:
        result = asyncio.run(run_demo(config_dir, Path(tmp) / "demo.db", keep_running=keep_running, sms=sms))
    return 0 if result.ok else 1

