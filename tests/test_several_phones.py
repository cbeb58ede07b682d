"""A person may have several phones (`phones: [main, second, ...]`): the script's SMS
goes to the first; when it fails for good, or (channels in turn) is not delivered within
`next_channel_after`, the next phone gets it, once, before the next channel; a reply
from any of the person's phones acknowledges for them. Over SMPP, against the sandbox
SMSC failing a number or holding its receipts back; the sample contacts' yu-xin has two
phones."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError

from coordinator.clock import ManualClock
from coordinator.config.catalog import Catalog
from coordinator.config.schemas import DoNotContact, Person
from coordinator.errors import SendError
from coordinator.escalation import due_steps
from coordinator.models import (
    Delivery, DeliveryKey, DeliveryStatus, Incident, Medium, ScriptKind, ScriptVersion, TimelineEvent,
)
from coordinator.roster import channels_of, open_phones, reach
from coordinator.sandbox import Delivery as Fates
from coordinator.sandbox.smsc import SandboxSmsc
from coordinator.sandbox.smtp import SmtpInbox
from coordinator.store import Store
from coordinator.store.rules import medium_of
from coordinator.web.i18n import translator
from coordinator.web.page import Readable
from coordinator.web.pages.incident_text import timeline_line
from coordinator.web.sandbox_page import AddressBook
from coordinator.web.state import SERVICES, Services

from .smpp_channels import OURS, smpp_service
from .test_fanout import FROM as TWILIO_FROM, make_env

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
TODAY = date(2026, 11, 24)
WAIT = timedelta(minutes=10)
WHO = "yu-xin"  # contacts/people.yaml: two phones, an email, a Ningbo shop
MAIN, SECOND = "+8613900000035", "+8613900000060"


def person(**fields: object) -> Person:
    return Person.model_validate({"id": "p1", "name": "王一", "region": "hangzhou", "teams": ["shop"], **fields})


# --- contacts ---------------------------------------------------------------------------


def test_phones_are_ordered_the_first_is_the_main_one() -> None:
    two = person(phones=[MAIN, SECOND])
    assert two.numbers == (MAIN, SECOND) and two.phone == MAIN  # `phone` reads as the main one
    assert "phone" not in two.model_dump() and Person.model_validate(two.model_dump()) == two
    assert person(phone=MAIN).numbers == (MAIN,)
    assert person(email="a@example.com").numbers == ()
    assert person(phones=[SECOND]).numbers == (SECOND,)


@pytest.mark.parametrize("fields, message", [
    ({"phone": MAIN, "phones": [MAIN, SECOND]}, "person p1 has both phone and phones"),
    ({"phones": []}, "at least 1 item"),
    ({"phones": [MAIN, "13900000002"]}, "phones.1"),
])
def test_bad_phones_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        person(**fields)


def test_the_sample_has_a_person_with_two_phones(catalog: Catalog) -> None:
    assert catalog.contacts.people[WHO].numbers == (MAIN, SECOND)
    assert catalog.contacts.by_phone(SECOND) == catalog.contacts.people[WHO]
    assert catalog.contacts.by_phone(MAIN) == catalog.contacts.people[WHO]
    assert catalog.contacts.most_phones == 2


def test_the_trainers_sandbox_page_names_the_person_on_either_phone(catalog: Catalog) -> None:
    book = AddressBook(catalog.contacts)
    assert book.person("sms", MAIN) == book.person("sms", SECOND) == (WHO, "余欣")


def test_a_numbers_entry_closes_that_number_only() -> None:
    two = person(phones=[MAIN, SECOND], email="a@example.com")
    closed = (DoNotContact(phone=MAIN, reason="号码停机"),)
    assert open_phones(two, closed, TODAY) == [SECOND]
    assert channels_of(two, closed, TODAY) == ["sms", "email"]
    assert reach(two, "sms", closed, TODAY) == (SECOND, 1)
    both = closed + (DoNotContact(phone=SECOND, reason="退订"),)
    assert channels_of(two, both, TODAY) == ["email"] and reach(two, "sms", both, TODAY) is None
    expired = (DoNotContact(phone=MAIN, reason="停机", until=date(2026, 11, 1)),)
    assert reach(two, "sms", expired, TODAY) == (MAIN, 0)
    by_person = (DoNotContact(person="p1", reason="休假", channels=["sms"]),)
    assert open_phones(two, by_person, TODAY) == [] and channels_of(two, by_person, TODAY) == ["email"]


def test_a_phone_that_replied_stop_is_passed_over() -> None:
    two = person(phones=[MAIN, SECOND])
    assert reach(two, "sms", (), TODAY) == (MAIN, 0)
    assert reach(two, "sms", (), TODAY, {MAIN}) == (SECOND, 1)
    assert reach(two, "sms", (), TODAY, {MAIN, SECOND}) is None


# --- the delivery key -------------------------------------------------------------------


def test_the_second_phones_sms_is_a_key_of_its_own() -> None:
    first = DeliveryKey(incident_id="INC-1", version=2, person_id="p1", medium=Medium.sms)
    second = first.model_copy(update={"phone": 1})
    assert second.as_id() == "INC-1:2:p1:sms@2" and first.as_id() == "INC-1:2:p1:sms"
    assert DeliveryKey.parse(second.as_id()) == second and second != first
    assert second.is_script and second.channel == "sms"  # counted with the SMS on the board
    notice = DeliveryKey.parse("INC-1:0:p1:sms@3-role-leader-assigned")
    assert notice is not None and (notice.phone, notice.role, notice.notice) == (2, "leader", "role_assigned")
    assert notice.as_id() == "INC-1:0:p1:sms@3-role-leader-assigned"
    for bad in ("INC-1:2:p1:sms@1", "INC-1:2:p1:sms@x", "INC-1:2:p1:fax@2"):
        assert DeliveryKey.parse(bad) is None, bad
    assert medium_of(second.as_id()) == "sms" and medium_of("INC-1:0:p1:sms@2-reminder") == "sms"


def test_a_first_phones_key_is_stored_as_before() -> None:
    key = DeliveryKey(incident_id="INC-1", version=2, person_id="p1", medium=Medium.sms)
    assert "phone" not in key.model_dump()
    delivery = Delivery(key=key.model_copy(update={"phone": 1}), address=SECOND, content_hash="h", updated_at=T0)
    assert Delivery.model_validate_json(delivery.model_dump_json()) == delivery


def test_channels_in_turn_give_each_further_phone_a_turn(catalog: Catalog) -> None:
    playbook = in_turn(catalog).playbooks["broadband-outage"]
    v1 = ScriptVersion(version=1, sms="x", email_subject="s", email_text="t", email_html="h", content_hash="c",
                       sms_encoding="UCS-2", sms_segments=1, author="auto", created_at=T0, approved_by="auto",
                       approved_at=T0)
    incident = Incident(id="INC-1", playbook=playbook.id, title="t", severity="minor", region="hangzhou",
                        opened_at=T0, opened_by="x", updated_at=T0, playbook_snapshot=playbook, scripts=[v1])
    keys = [s.key for s in due_steps(incident, playbook, T0 + 3 * WAIT, set(), phones=2) if s.kind == "next_channel"]
    assert keys == ["next_channel:1", "next_channel:1:2"]  # the second phone, then the email
    assert [s.key for s in due_steps(incident, playbook, T0 + 3 * WAIT, set()) if s.kind == "next_channel"] == [
        "next_channel:1"]


# --- the service, over SMPP -------------------------------------------------------------


def in_turn(catalog: Catalog) -> Catalog:
    playbook = catalog.playbooks["broadband-outage"]
    audience = playbook.audience.model_copy(update={"channels": "in_turn", "next_channel_after": WAIT})
    return dataclasses.replace(catalog, playbooks={**catalog.playbooks,
                                                   playbook.id: playbook.model_copy(update={"audience": audience})})


@dataclasses.dataclass
class Env:
    client: TestClient
    smsc: SandboxSmsc
    inbox: SmtpInbox
    clock: ManualClock

    @property
    def services(self) -> Services:
        return self.client.app[SERVICES]  # type: ignore[index]

    async def trigger(self) -> str:
        opened = await self.services.pipeline.trigger("broadband-outage", region="ningbo", actor="chen-li")
        return opened.incident.id

    async def mine(self, incident_id: str) -> list[Delivery]:
        """yu-xin's messages of the script, by key."""
        return sorted((d for d in await self.services.store.deliveries(incident_id)
                       if d.key.person_id == WHO and d.key.is_script),
                      key=lambda d: (d.key.medium.value, d.key.phone))

    async def until(self, incident_id: str, done: Callable[[list[Delivery]], bool]) -> list[Delivery]:
        """Sends what is due and waits for receipts until yu-xin's messages satisfy `done`."""
        for _ in range(300):
            await self.services.outbox.drain()
            mine = await self.mine(incident_id)
            if done(mine):
                return mine
            await asyncio.sleep(0.02)
        raise AssertionError([(d.key.as_id(), d.status.value) for d in await self.mine(incident_id)])

    def texts_to(self, phone: str, text: str) -> int:
        return sum(1 for m in self.smsc.messages if m.destination.lstrip("+") == phone.lstrip("+") and m.text == text)


@asynccontextmanager
async def service(store: Store, catalog: Catalog, *, outcomes: dict[str, str] | None = None,
                  receipt_delay: float = 0.01) -> AsyncIterator[Env]:
    clock = ManualClock(T0)
    async with smpp_service(store, catalog, clock, receipt_delay=receipt_delay, outcomes=outcomes) as served:
        yield Env(*served, clock)


def settled(mine: list[Delivery]) -> bool:
    """Every message sent, and every SMS with its receipt (an email gets none)."""
    waiting = (DeliveryStatus.queued, DeliveryStatus.sending)
    return bool(mine) and all(d.status not in waiting and (d.key.medium != Medium.sms or d.status != DeliveryStatus.sent)
                              for d in mine)


async def test_a_first_phone_failing_for_good_hands_the_script_to_the_second_once(
        store: Store, catalog: Catalog) -> None:
    async with service(store, in_turn(catalog), outcomes={MAIN: "UNDELIV"}) as env:
        incident_id = await env.trigger()
        mine = await env.until(incident_id, lambda m: len(m) == 2 and settled(m))
        first, second = mine
        assert (first.key.phone, first.address, first.status) == (0, MAIN, DeliveryStatus.undelivered)
        assert (second.key.phone, second.address, second.status) == (1, SECOND, DeliveryStatus.delivered)
        assert second.fell_back and second.key.as_id() == f"{incident_id}:1:{WHO}:sms@2"
        v1 = (await env.services.store.get_incident(incident_id)).script(1)
        assert v1 is not None and env.texts_to(SECOND, v1.sms) == 1 and env.texts_to(MAIN, v1.sms) == 1
        # the failure reported again (a second receipt, another instance): never a second SMS
        await env.services.messages.fallback(first, SendError(first.key.as_id(), "UNDELIV", "again", retryable=False, permanent=True))
        await env.services.outbox.drain()
        assert env.texts_to(SECOND, v1.sms) == 1 and len(await env.mine(incident_id)) == 2
        failed = [e for e in await env.services.store.timeline(incident_id)
                  if e.kind == "delivery_failed" and e.data["person"] == WHO]
        assert [(e.data["fallback"], e.data["phone"]) for e in failed] == [("sms", 2), ("sms already sent", 2)]
        assert all(MAIN not in str(e.data) and SECOND not in str(e.data) for e in failed)
        # in turn: the second phone delivered, so no email when the turns come
        env.clock.advance(2 * WAIT)
        await env.services.pipeline.tick()
        await env.services.outbox.drain()
        assert [d.key.medium for d in await env.mine(incident_id)] == [Medium.sms, Medium.sms]
        # the reminder follows the script to the phone it reached (a role notice goes to the first)
        nudges = [d for d in await env.services.store.deliveries(incident_id)
                  if d.key.person_id == WHO and d.key.notice == "reminder"]
        assert nudges and {(d.key.medium, d.key.phone, d.address) for d in nudges} == {(Medium.sms, 1, SECOND)}
        # the console's line names the phone's place, never its number
        rd = Readable(catalog, ZoneInfo("Asia/Shanghai"))
        incident = await env.services.store.get_incident(incident_id)
        assert timeline_line(failed[0], incident, rd, translator("zh")).endswith("已改发其第2个手机号")
        assert timeline_line(failed[0], incident, rd, translator("en")).endswith("sent to their phone no. 2 instead")
        for path in (f"/api/incidents/{incident_id}/deliveries", f"/api/incidents/{incident_id}/report"):
            page = await (await env.client.get(path)).text()
            assert MAIN not in page and SECOND not in page and "8613900000060" not in page, path


async def test_both_phones_failing_leave_the_email_once(store: Store, catalog: Catalog) -> None:
    async with service(store, in_turn(catalog), outcomes={MAIN: "UNDELIV", SECOND: "REJECTD"}) as env:
        incident_id = await env.trigger()
        mine = await env.until(incident_id, lambda m: len(m) == 3 and settled(m))
        assert [(d.key.medium, d.key.phone, d.status) for d in mine] == [
            (Medium.email, 0, DeliveryStatus.sent), (Medium.sms, 0, DeliveryStatus.undelivered),
            (Medium.sms, 1, DeliveryStatus.failed)]  # REJECTD
        assert mine[0].fell_back and len(env.inbox.mailbox("yu.xin@example.com")) == 1


async def test_in_turn_an_undelivered_first_phone_gives_way_to_the_second_then_the_email(
        store: Store, catalog: Catalog) -> None:
    async with service(store, in_turn(catalog), receipt_delay=3600) as env:  # receipts that do not come
        incident_id = await env.trigger()
        await env.services.outbox.drain()
        assert [(d.key.medium, d.key.phone) for d in await env.mine(incident_id)] == [(Medium.sms, 0)]
        env.clock.advance(WAIT)
        await env.services.pipeline.tick()
        await env.services.outbox.drain()
        assert [(d.key.medium, d.key.phone, d.address) for d in await env.mine(incident_id)] == [
            (Medium.sms, 0, MAIN), (Medium.sms, 1, SECOND)]
        v1 = (await env.services.store.get_incident(incident_id)).script(1)
        assert v1 is not None and env.texts_to(SECOND, v1.sms) == 1
        turn: TimelineEvent = [e for e in await env.services.store.timeline(incident_id) if e.kind == "next_channel"][-1]
        assert turn.data["phones"] == 1 and turn.data["emails"] >= 1  # one-phone people: their email now
        env.clock.advance(WAIT)
        await env.services.pipeline.tick()
        await env.services.pipeline.tick()  # a second tick (another instance) adds nothing
        await env.services.outbox.drain()
        assert [(d.key.medium, d.key.phone) for d in await env.mine(incident_id)] == [
            (Medium.email, 0), (Medium.sms, 0), (Medium.sms, 1)]
        assert env.texts_to(SECOND, v1.sms) == 1 and env.texts_to(MAIN, v1.sms) == 1
        assert len(env.inbox.mailbox("yu.xin@example.com")) == 1


async def test_a_reply_from_the_other_phone_acknowledges_for_the_person(store: Store, catalog: Catalog) -> None:
    async with service(store, catalog) as env:
        incident_id = await env.trigger()
        mine = await env.until(incident_id, lambda m: any(d.key.medium == Medium.sms and
                                                          d.status == DeliveryStatus.delivered for d in m))
        assert [d.address for d in mine if d.key.medium == Medium.sms] == [MAIN]  # the second phone got nothing
        incident = await env.services.store.get_incident(incident_id)
        before = len(env.smsc.messages)
        assert await env.smsc.inject_mo(SECOND, OURS, f"1 {incident.code}", ucs2=True) == [0]
        acks = [a for a in await env.services.store.acks(incident_id) if a.person_id == WHO]
        assert [(a.version, a.via) for a in acks] == [(1, "sms")]
        await env.smsc.wait_for(lambda: len(env.smsc.messages) > before)
        answer = env.smsc.messages[-1]
        assert answer.destination.lstrip("+") == SECOND.lstrip("+") and "已确认" in answer.text


async def test_a_stop_from_one_phone_stops_that_number_only(store: Store, catalog: Catalog) -> None:
    async with service(store, catalog) as env:
        incident_id = await env.trigger()
        await env.services.outbox.drain()  # bound to the SMSC
        assert await env.smsc.inject_mo(MAIN, OURS, "STOP") == [0]
        assert await env.services.store.opted_out() == {MAIN}
        await env.services.pipeline.publication.draft_and_send(incident_id, ScriptKind.update, "system")  # v2
        await env.services.outbox.drain()
        assert [(d.key.version, d.key.phone, d.address) for d in await env.mine(incident_id)
                if d.key.medium == Medium.sms] == [(1, 0, MAIN), (2, 1, SECOND)]


async def test_a_drill_reaches_the_second_phone_and_a_reply_from_it_acknowledges_the_drill_only(
        store: Store, catalog: Catalog) -> None:
    async with service(store, catalog, outcomes={MAIN: "UNDELIV"}) as env:
        real = await env.trigger()
        drill = (await env.services.pipeline.trigger("broadband-outage", region="ningbo", actor="trainer",
                                                     drill=True)).incident
        for incident_id in (real, drill.id):
            mine = await env.until(incident_id, lambda m: any(d.key.phone == 1 and d.status == DeliveryStatus.delivered
                                                              for d in m))
            assert [(d.key.phone, d.address) for d in mine if d.key.medium == Medium.sms] == [(0, MAIN), (1, SECOND)]
        assert await env.smsc.inject_mo(SECOND, OURS, f"1 {drill.code}") == [0]
        assert [a.version for a in await env.services.store.acks(drill.id) if a.person_id == WHO] == [1]
        assert [a for a in await env.services.store.acks(real) if a.person_id == WHO] == []


async def test_over_twilio_too_the_second_phone_takes_over_and_its_reply_counts(store: Store, catalog: Catalog) -> None:
    """The Twilio path: the status callback names the second phone's delivery (`...sms@2`)."""
    async for env in make_env(store, catalog, fates=Fates(step_delay=0.005, receipt_delay=0.01,
                                                          failures={MAIN: 30003})):
        body = await env.trigger()
        for _ in range(100):
            await env.settle()
            mine = [d for d in await env.services.store.deliveries(body["id"])
                    if d.key.person_id == WHO and d.key.is_script and d.key.medium == Medium.sms]
            if len(mine) == 2 and all(d.status in (DeliveryStatus.delivered, DeliveryStatus.undelivered) for d in mine):
                break
            await asyncio.sleep(0.02)
        assert sorted((d.key.phone, d.status) for d in mine) == [(0, DeliveryStatus.undelivered),
                                                                 (1, DeliveryStatus.delivered)]
        v1 = (await env.services.store.get_incident(body["id"])).script(1)
        assert v1 is not None and [m.body for m in env.sandbox.received_by(SECOND)] == [v1.sms]
        await env.sandbox.reply(SECOND, TWILIO_FROM, "1")
        await env.sandbox.settled()
        assert [a.version for a in await env.services.store.acks(body["id"]) if a.person_id == WHO] == [1]
