"""A drill in sandbox channels, live: the service (its own APScheduler ticks, its
outbox worker) and the sandbox run over real HTTP and SMTP; the test only moves the
injected clock on and plays the staff's phones. The weekly drill is due a minute after
the start; it fires on time, runs to its end unattended, and its report's figures are
what the sandbox recorded."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from coordinator.app import create_app
from coordinator.config.catalog import load_catalog
from coordinator.clock import ManualClock
from coordinator.models import DrillRunStatus
from coordinator.sandbox import Delivery, SmtpInbox, TwilioSandbox
from coordinator.sandbox.staff import SimulatedStaff
from coordinator.config.settings import Settings
from coordinator.store import Store
from coordinator.web.state import SERVICES, Services

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN
from .test_fanout import FROM, SID, TOKEN, free_port

ROOT = Path(__file__).resolve().parents[1]
WED_10 = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)  # weekly-broadband: Wednesdays 10:00 Shanghai


def history(rng: random.Random, end: datetime) -> list[tuple[int, dict[str, Any]]]:
    items: list[tuple[int, dict[str, Any]]] = []
    for b in range(3 * 288):
        at = end - timedelta(days=3) + timedelta(minutes=5 * b)
        for k in range(rng.choice((0, 1, 1, 2, 2, 3))):
            items.append((len(items) + 1, {"id": f"h{b}-{k}", "received_at": (at + timedelta(seconds=rng.randrange(300))).isoformat(),
                                           "channel": "hotline", "category": "broadband", "region": "ningbo"}))
    return items


async def until(check: Any, clock: ManualClock, staff: SimulatedStaff, sandbox: TwilioSandbox, *, step: timedelta,
                limit: int) -> None:
    """Move the clock on a step at a time, letting the service's own ticks run, until
    `check()` holds."""
    for _ in range(limit):
        if await check():
            return
        clock.advance(step)
        await asyncio.sleep(0.06)  # a few of the service's ticks (every 20 ms)
        await sandbox.settled()
        await staff.step()
    raise AssertionError("gave up waiting")


async def test_scheduled_sandbox_drill_runs_unattended_and_reports_what_the_sandbox_saw(store: Store) -> None:
    catalog = load_catalog(ROOT)
    clock = ManualClock(WED_10 - timedelta(minutes=1))
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    inbox = SmtpInbox(clock=clock)
    await inbox.start()
    sandbox = TwilioSandbox(SID, TOKEN, numbers=(FROM,), inbound_url=f"{public}/hooks/twilio/inbound", clock=clock,
                            seed=11, delivery=Delivery(step_delay=0.002, receipt_delay=0.004), inbox=inbox)
    await sandbox.start()
    host, smtp_port = inbox.address
    settings = Settings(
        public_url=public, subscriber_key="k", ack_secret="s", tick_seconds=0.02, admin_token=ADMIN_TOKEN,
        twilio_account_sid=SID, twilio_auth_token=TOKEN, twilio_from=FROM, twilio_base_url=sandbox.base_url,
        smtp_host=host, smtp_port=smtp_port, smtp_from="yingji@example.com",
    )
    client = TestClient(TestServer(create_app(settings, clock=clock, store=store, catalog=catalog), port=port),
                        headers=ADMIN_HEADERS)
    await client.start_server()
    services: Services = client.app[SERVICES]  # type: ignore[index]
    people = catalog.contacts.people
    in_scope = sorted(p.phone for p in people.values() if p.region == "ningbo" and "hotline" in p.teams and p.phone)
    staff = SimulatedStaff(sandbox, clock, FROM, answer_share=1.0, delay=(20, 240), seed=3,
                           never=frozenset(in_scope[:1]))  # one agent never answers
    try:
        items = history(random.Random(1), clock.now())
        for i in range(0, len(items), 2000):
            await services.intake.submit(items[i:i + 2000])
        await services.pipeline.catch_up()
        drill = catalog.drills["weekly-broadband"]

        async def started() -> bool:
            return bool(await store.drill_runs(drill.id))

        await until(started, clock, staff, sandbox, step=timedelta(seconds=10), limit=30)
        [run] = await store.drill_runs(drill.id)
        assert run.how == "schedule" and run.scheduled_for == WED_10 and run.started_at - WED_10 < timedelta(seconds=30)

        async def finished() -> bool:
            current = await store.get_drill_run(run.id)
            return current is not None and current.status == DrillRunStatus.finished

        await until(finished, clock, staff, sandbox, step=timedelta(seconds=30), limit=200)
        for _ in range(50):  # the stand-down and the last receipts
            await asyncio.sleep(0.02)
            await sandbox.settled()
            if await store.outbox_size() == 0:
                break
        run = await store.get_drill_run(run.id)  # type: ignore[assignment]
        assert run is not None and run.detected is True and run.incident_id is not None
        assert run.end_reason == "time is up"  # one agent never answers: the drill runs its full hour
        assert run.ended_at is not None and run.ended_at - run.started_at >= drill.max_duration

        resp = await client.get(f"/api/drills/{drill.id}/reports")
        assert resp.status == 200
        body = await resp.json()
        [report] = body["reports"]
        incident = await store.get_incident(run.incident_id)
        v1 = incident.script(1)
        assert v1 is not None and v1.sms.startswith("【演练】")
        # What the sandbox recorded: the script SMS per phone and its final status, the mails, the replies.
        script_sms = [m for m in sandbox.messages if m.direction != "inbound" and m.body == v1.sms]
        mails = [m for box in inbox.mailboxes().values() for m in box if m.subject == v1.email_subject]
        sms = next(c for c in report["incident"]["delivery"] if c["channel"] == "sms")
        email = next(c for c in report["incident"]["delivery"] if c["channel"] == "email")
        assert sms["messages"] == len(script_sms) == len({m.to for m in script_sms}) > 0
        assert sms["delivered"] == sum(m.status == "delivered" for m in script_sms)
        assert email["messages"] == len(mails) > 0
        # Every drill message the phones got is marked.
        assert all(m.body.startswith("【演练】") for m in sandbox.messages if m.direction != "inbound")
        acks = report["incident"]["acks"]["overall"]
        replied = {m.from_ for m in sandbox.messages if m.direction == "inbound"}
        script_phones = {m.to for m in script_sms}
        assert acks["acked"] == len(script_phones & replied) == acks["in_scope"] - 1
        never = [p["person_id"] for p in report["incident"]["acks"]["never_acked"]]
        assert [people[p].phone for p in never] == sorted(staff.never)
        assert report["success"]["in_scope"] == acks["in_scope"]
        assert report["to_detect_seconds"] is not None and report["to_detect_seconds"] < 20 * 60
        assert report["incident"]["escalations"] or report["incident"]["chases"]  # the silent one was chased
        page = await client.get(f"/api/drills/{drill.id}/reports?format=html")
        assert page.status == 200
        html = await page.text()
        assert "演练报告" in html and run.id in html and "未确认人员" in html
    finally:
        await client.close()
        await sandbox.stop()
        await inbox.stop()
