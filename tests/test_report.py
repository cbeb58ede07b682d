"""The incident report: its figures on hand-built incidents (pure), then end to end
through the real app, sandbox and store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import aiohttp
import jinja2
import pytest
from openapi_schema_validator import OAS31Validator

from coordinator.config.catalog import Catalog, Contacts
from coordinator.config.schemas import Person, Region, Team
from coordinator.models import (
    Ack,
    Delivery,
    DeliveryKey,
    DeliveryStatus,
    Incident,
    IncidentStatus,
    RoleAssignment,
    ScriptKind,
    ScriptVersion,
    Surge,
    TimelineEvent,
)
from coordinator.reports.incident import build_report, notice_purpose
from coordinator.reports.parts import IncidentReport, median, percentile
from coordinator.roster import audience
from coordinator.store import Store
from coordinator.web.openapi import document
from coordinator.web.reports import duration, page_context

from .test_fanout import FROM, Env, make_env

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
IID = "INC-20261124-abcdef"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def contacts() -> Contacts:
    people = [
        # id, name, region, teams
        ("a1", "甲一", "ningbo", ["hotline"]),
        ("a2", "甲二", "ningbo", ["hotline", "shop"]),
        ("a3", "甲三", "ningbo", ["shop"]),
        ("a4", "甲四", "wenzhou", ["hotline"]),
        ("a5", "甲五", "wenzhou", ["shop"]),
        ("a6", "甲六", "wenzhou", ["hotline"]),
        ("lead", "组长", "hangzhou", ["leadership"]),
        ("dep", "副组长", "hangzhou", ["leadership"]),
    ]
    return Contacts(
        regions={r: Region(id=r, name=n) for r, n in (("ningbo", "宁波"), ("wenzhou", "温州"), ("hangzhou", "杭州"))},
        teams={"hotline": Team(id="hotline", name="热线", kind="frontline"),
               "shop": Team(id="shop", name="营业厅", kind="frontline"),
               "leadership": Team(id="leadership", name="领导小组", kind="emergency")},
        people={pid: Person(id=pid, name=name, region=region, teams=teams, phone=f"+86139000000{i:02d}",
                            email=f"{pid}@example.com")
                for i, (pid, name, region, teams) in enumerate(people)},
        rotations={}, do_not_contact=(),
    )


def version(n: int, kind: ScriptKind = ScriptKind.script, approved: datetime | None = T0) -> ScriptVersion:
    return ScriptVersion(version=n, kind=kind, sms=f"v{n}", email_subject="s", email_text="t", email_html="h",
                         content_hash=f"h{n}", sms_encoding="UCS-2", sms_segments=1, author="auto", created_at=T0,
                         approved_by="auto" if approved else None, approved_at=approved)


def incident(**extra: Any) -> Incident:
    fields: dict[str, Any] = dict(id=IID, playbook="broadband-outage", title="宽带大面积故障", severity="minor",
                                  category="broadband", region="ningbo", surge_key="broadband/ningbo",
                                  opened_at=T0, opened_by="leader", updated_at=T0)
    fields.update(extra)
    return Incident.model_validate(fields)


def delivery(person: str, channel: str, status: DeliveryStatus, when: datetime, v: int = 1, **extra: Any) -> Delivery:
    return Delivery(key=DeliveryKey(incident_id=IID, version=v, person_id=person, channel=channel), status=status,
                    address="x", content_hash=f"h{v}", updated_at=when, **extra)


def ack(person: str, when: datetime, v: int | None = 1) -> Ack:
    return Ack(incident_id=IID, person_id=person, version=v, via="sms", at=when)


def surge(key: str = "broadband/ningbo", onset: datetime = at(-15), detected: datetime = at(-3),
          **extra: Any) -> Surge:
    category, region = key.removeprefix("drill:").split("/")
    return Surge(key=key, category=category, region=region, onset=onset, detected_at=detected, observed=40,
                 expected=8.0, ratio=5.0, score=0.99, **extra)


def report(inc: Incident, *, timeline: list[TimelineEvent] | None = None, deliveries: list[Delivery] = [],
           acks: list[Ack] = [], surges: list[Surge] = []) -> IncidentReport:
    opened = TimelineEvent(at=inc.opened_at, kind="opened", data={
        "surge_data": inc.surge.model_dump(mode="json") if inc.surge else None})
    return build_report(inc, timeline=timeline if timeline is not None else [opened], deliveries=deliveries,
                        acks=acks, contacts=contacts(), surges=surges, now=at(600))


# --- timeliness ------------------------------------------------------------------------


def test_timeliness_of_a_surge_incident_counts_from_the_opening_surge() -> None:
    first = surge(onset=at(-15), detected=at(-3))
    bigger = surge(onset=at(5), detected=at(9))  # attached later: the incident now shows this one
    inc = incident(surge=bigger, surge_count=2, acknowledged_at=at(4), scripted_at=at(1), resolved_at=at(125),
                   status=IncidentStatus.resolved, scripts=[version(1, approved=at(1))])
    timeline = [TimelineEvent(at=T0, kind="opened", data={"surge_data": first.model_dump(mode="json")})]
    deliveries = [
        delivery("a1", "sms", DeliveryStatus.queued, at(0.5)),  # never handed over: not reached
        delivery("a2", "sms", DeliveryStatus.failed, at(1.2)),  # failed: not reached
        delivery("a3", "email", DeliveryStatus.sent, at(2.5)),
        delivery("a1", "email", DeliveryStatus.delivered, at(3)),
        delivery("a4", "sms-reminder", DeliveryStatus.sent, at(1.5)),  # a notice, not the script
    ]
    t = report(inc, timeline=timeline, deliveries=deliveries).timeliness
    assert t.trigger == "surge" and (t.onset, t.detected_at) == (at(-15), at(-3))
    assert t.to_detect_seconds == 12 * 60
    assert t.to_open_seconds == 15 * 60
    assert t.to_acknowledge_seconds == 4 * 60
    assert t.to_approve_seconds == 60
    assert (t.first_script_at, t.to_first_script_seconds) == (at(2.5), 150)
    assert t.to_resolve_seconds == 125 * 60


def test_a_manual_trigger_has_no_detection_and_opens_at_once() -> None:
    t = report(incident(surge_key="broadband/ningbo")).timeliness
    assert t.trigger == "manual"
    assert (t.onset, t.to_detect_seconds, t.to_open_seconds) == (None, None, 0.0)
    assert (t.to_first_script_seconds, t.to_resolve_seconds, t.to_approve_seconds) == (None, None, None)


# --- delivery --------------------------------------------------------------------------


def test_delivery_per_channel_counts_the_wording_only() -> None:
    inc = incident(scripts=[version(1), version(2, ScriptKind.update), version(3)])
    deliveries = [
        delivery("a1", "sms", DeliveryStatus.delivered, at(1)),
        delivery("a2", "sms", DeliveryStatus.sent, at(1)),
        delivery("a3", "sms", DeliveryStatus.undelivered, at(1)),
        delivery("a3", "email", DeliveryStatus.sent, at(2), fell_back=True),
        delivery("a4", "sms", DeliveryStatus.failed, at(1)),  # failed, no email to fall back to
        delivery("a5", "sms", DeliveryStatus.queued, at(1)),
        delivery("a6", "sms", DeliveryStatus.sending, at(1)),
        delivery("a1", "email", DeliveryStatus.sent, at(1)),
        delivery("a1", "sms", DeliveryStatus.delivered, at(5), v=3),
        delivery("a1", "sms", DeliveryStatus.delivered, at(3), v=2),  # a status update: not counted
        delivery("a2", "sms-reminder", DeliveryStatus.delivered, at(3)),  # a notice: not counted
    ]
    sms, email = report(inc, deliveries=deliveries).delivery
    assert sms.model_dump() == dict(channel="sms", messages=7, recipients=6, queued=2, sent=1, delivered=2,
                                    failed=2, fell_back=1, delivery_rate=3 / 7, read=0, read_rate=None,
                                    median_seconds_to_read=None)
    assert email.model_dump() == dict(channel="email", messages=2, recipients=2, queued=0, sent=2, delivered=0,
                                      failed=0, fell_back=1, delivery_rate=1.0, read=0, read_rate=None,
                                      median_seconds_to_read=None)


def test_no_messages_no_rate() -> None:
    sms, email = report(incident()).delivery
    assert (sms.messages, sms.delivery_rate, email.delivery_rate) == (0, None, None)


# --- acknowledgements ------------------------------------------------------------------


def ack_case() -> IncidentReport:
    """v1 then v2 (the wording in force; v3 is a draft). v2 reached a1..a5 at known
    moments and was created for a6 too, whose SMS failed."""
    inc = incident(scripts=[version(1), version(2, approved=at(10)), version(3, approved=None)])
    deliveries = [
        delivery("a1", "sms", DeliveryStatus.delivered, at(11), v=2),
        delivery("a1", "email", DeliveryStatus.sent, at(10), v=2),  # the earlier one counts
        delivery("a2", "sms", DeliveryStatus.delivered, at(10), v=2),
        delivery("a3", "sms", DeliveryStatus.sent, at(10), v=2),
        delivery("a4", "sms", DeliveryStatus.delivered, at(12), v=2),
        delivery("a5", "email", DeliveryStatus.sent, at(10), v=2),
        delivery("a6", "sms", DeliveryStatus.failed, at(10), v=2),
        delivery("lead", "sms", DeliveryStatus.delivered, at(0), v=1),  # v1 only: not in scope
    ]
    acks = [
        ack("a1", at(12), v=2),  # 120 s after its email
        ack("a2", at(11), v=2),  # 60 s
        ack("a2", at(20), v=1),  # v1 ack: irrelevant to v2
        ack("a3", at(15), v=2),  # 300 s
        ack("a4", at(11.5), v=2),  # before its receipt was recorded: 0 s
        ack("a5", at(5), v=1),  # acknowledged v1 only: not v2
        ack("lead", at(1), v=1),
        ack("a6", at(30), v=None),  # a role ack, not the script
    ]
    return report(inc, deliveries=deliveries, acks=acks)


def test_ack_rate_is_against_the_audience_of_the_wording_in_force() -> None:
    acks = ack_case().acks
    assert acks.version == 2
    o = acks.overall
    assert (o.in_scope, o.acked, o.timed) == (6, 4, 4)
    assert o.ack_rate == pytest.approx(4 / 6)
    # times: 0, 60, 120, 300 -> median (60 + 120) / 2, p90 the 4th of 4 (ceil 3.6)
    assert (o.median_seconds, o.p90_seconds) == (90.0, 300.0)


def test_acks_per_team_and_region_count_people_in_each_of_their_teams() -> None:
    acks = ack_case().acks
    teams = {g.id: g for g in acks.by_team}
    assert list(teams) == ["hotline", "shop"] and teams["shop"].name == "营业厅"
    # hotline: a1 (120), a2 (60), a4 (0), a6 (never); shop: a2 (60), a3 (300), a5 (never)
    assert (teams["hotline"].stats.in_scope, teams["hotline"].stats.acked) == (4, 3)
    assert (teams["hotline"].stats.median_seconds, teams["hotline"].stats.p90_seconds) == (60.0, 120.0)
    assert (teams["shop"].stats.in_scope, teams["shop"].stats.acked) == (3, 2)
    assert (teams["shop"].stats.median_seconds, teams["shop"].stats.p90_seconds) == (180.0, 300.0)
    regions = {g.id: g.stats for g in acks.by_region}
    assert [g.name for g in acks.by_region] == ["宁波", "温州"]
    assert (regions["ningbo"].in_scope, regions["ningbo"].acked, regions["ningbo"].ack_rate) == (3, 3, 1.0)
    assert (regions["ningbo"].median_seconds, regions["ningbo"].p90_seconds) == (120.0, 300.0)
    assert (regions["wenzhou"].in_scope, regions["wenzhou"].acked, regions["wenzhou"].median_seconds) == (3, 1, 0.0)


def test_never_acked_names_those_in_scope_and_says_whether_it_reached_them() -> None:
    missing = ack_case().acks.never_acked
    assert [(p.person_id, p.name, p.teams, p.region, p.reached) for p in missing] == [
        ("a5", "甲五", ["shop"], "wenzhou", True),
        ("a6", "甲六", ["hotline"], "wenzhou", False),
    ]


def test_an_ack_without_a_reached_message_counts_but_is_not_timed() -> None:
    inc = incident(scripts=[version(1)])
    deliveries = [delivery("a1", "sms", DeliveryStatus.queued, at(0)),
                  delivery("a2", "sms", DeliveryStatus.delivered, at(1))]
    o = report(inc, deliveries=deliveries, acks=[ack("a1", at(2)), ack("a2", at(4))]).acks.overall
    assert (o.in_scope, o.acked, o.timed, o.median_seconds, o.p90_seconds) == (2, 2, 1, 180.0, 180.0)


def test_before_any_approved_wording_nobody_is_in_scope() -> None:
    acks = report(incident(scripts=[version(1, approved=None)]),
                  deliveries=[delivery("a1", "sms", DeliveryStatus.queued, at(0))]).acks
    assert acks.version is None
    assert (acks.overall.in_scope, acks.overall.ack_rate, acks.overall.median_seconds) == (0, None, None)
    assert acks.never_acked == [] and acks.by_team == []


def test_someone_gone_from_the_contacts_is_still_counted() -> None:
    inc = incident(scripts=[version(1)])
    acks = report(inc, deliveries=[delivery("ghost", "sms", DeliveryStatus.sent, at(0))]).acks
    assert [(p.person_id, p.teams, p.region) for p in acks.never_acked] == [("ghost", ["-"], "-")]
    assert [g.id for g in acks.by_team] == ["-"]


@pytest.mark.parametrize("values, med, p90", [
    ([], None, None),
    ([7.0], 7.0, 7.0),
    ([3.0, 1.0], 2.0, 3.0),
    ([float(v) for v in range(1, 7)], 3.5, 6.0),  # ceil(5.4) = 6th: rounding would say 5
    ([float(v) for v in range(1, 11)], 5.5, 9.0),  # ceil(9.0) = 9th
    ([float(v) for v in range(1, 12)], 6.0, 10.0),  # ceil(9.9) = 10th
    ([float(v) for v in range(1, 21)], 10.5, 18.0),
    ([5.0, 1.0, 100.0], 5.0, 100.0),
])
def test_median_and_nearest_rank_p90(values: list[float], med: float | None, p90: float | None) -> None:
    assert median(values) == med
    assert percentile(values, 90) == p90


# --- roles, escalations, chasing -------------------------------------------------------


def test_roles_escalations_reminders_and_notices() -> None:
    leader = RoleAssignment(role="leader", title="组长", chain=["lead", "dep"], level=1, ack_within_seconds=900,
                            assigned_at=T0, acked_by="dep", acked_at=at(21))
    tech = RoleAssignment(role="tech", title="技术", chain=["a1"], ack_within_seconds=600, assigned_at=T0)
    cs = RoleAssignment(role="cs-lead", title="客服", chain=[], ack_within_seconds=600, assigned_at=T0)
    inc = incident(roles=[leader, tech, cs], scripts=[version(1)])
    timeline = [
        TimelineEvent(at=T0, kind="opened", data={"surge_data": None}),
        TimelineEvent(at=at(10), kind="audience_reminder", data={"version": 1, "not_acknowledged": ["a1", "a2"],
                                                                 "messages": 2}),
        TimelineEvent(at=at(10), kind="alert", data={"message": "role tech: no one ...", "role": "tech"}),
        TimelineEvent(at=at(15), kind="escalated", data={"role": "leader", "from": "lead", "to": "dep", "level": 1}),
        TimelineEvent(at=at(20), kind="audience_supervisor", data={"version": 1, "not_acknowledged": ["a2"],
                                                                   "messages": 1}),
        TimelineEvent(at=at(30), kind="remind_roles", data={"unacknowledged": {"tech": "a1"}}),
    ]
    deliveries = [
        delivery("lead", "sms-role-leader-assigned", DeliveryStatus.delivered, T0, v=0),
        delivery("dep", "sms-role-leader-level1", DeliveryStatus.sent, at(15), v=0),
        delivery("a1", "sms-role-tech-reminder", DeliveryStatus.failed, at(30), v=0),
        delivery("a1", "sms-reminder", DeliveryStatus.delivered, at(10)),
        delivery("a2", "email-reminder", DeliveryStatus.sent, at(10)),
        delivery("a2", "sms-reminder-remind_audience0", DeliveryStatus.queued, at(40)),
        delivery("boss", "sms-supervisor", DeliveryStatus.delivered, at(20)),
        delivery("a1", "sms", DeliveryStatus.delivered, at(0)),
    ]
    r = report(inc, timeline=timeline, deliveries=deliveries)
    by_role = {x.role: x for x in r.roles}
    lead = by_role["leader"]
    assert (lead.first_holder, lead.holder, lead.level) == ("lead", "dep", 1)
    assert (lead.acked_by, lead.acked_by_name) == ("dep", "副组长")
    assert (lead.time_to_ack_seconds, lead.escalations, lead.exhausted) == (21 * 60, 1, False)
    tech_role = by_role["tech"]
    assert (tech_role.acked_at, tech_role.time_to_ack_seconds, tech_role.exhausted) == (None, None, True)
    assert by_role["cs-lead"].unfilled and by_role["cs-lead"].holder is None
    assert [(e.role, e.from_holder, e.to_holder, e.level, e.at) for e in r.escalations] == [
        ("leader", "lead", "dep", 1, at(15))]
    assert [(c.kind, c.version, c.waiting, c.messages) for c in r.chases] == [
        ("audience_reminder", 1, 2, 2), ("audience_supervisor", 1, 1, 1), ("remind_roles", None, 1, None)]
    assert [(n.purpose, n.messages, n.reached) for n in r.notices] == [
        ("role_assigned", 1, 1), ("role_reminder", 1, 0), ("role_escalation", 1, 1), ("reminder", 3, 2),
        ("supervisor", 1, 1)]


@pytest.mark.parametrize("channel, purpose", [
    ("sms", None), ("email", None), ("sms-reminder", "reminder"), ("email-reminder-remind_audience1", "reminder"),
    ("sms-supervisor", "supervisor"), ("sms-role-cs-lead-assigned", "role_assigned"),
    ("sms-role-cs-lead-reminder", "role_reminder"), ("email-role-tech-level2", "role_escalation"),
    ("sms-something-else", None),
])
def test_notice_purposes(channel: str, purpose: str | None) -> None:
    assert notice_purpose(channel) == purpose


# --- recurrence ------------------------------------------------------------------------


def test_recurrence_window_is_the_30_days_before_opening() -> None:
    opening = surge(onset=at(-15), detected=at(-3))
    inc = incident(surge=opening, surge_count=1)
    day = timedelta(days=1)
    surges = [
        surge(onset=at(-60) - 30 * day, detected=T0 - 30 * day - timedelta(seconds=1)),  # just outside
        surge(onset=at(-60) - 30 * day, detected=T0 - 30 * day),  # the first moment inside
        surge(onset=T0 - 9 * day, detected=T0 - 9 * day + timedelta(minutes=5)),
        surge(key="broadband/wenzhou", detected=T0 - 2 * day),  # another key
        surge(key="broadband/*", detected=T0 - 2 * day),  # the category-wide stream is another key
        surge(detected=T0 - day, drill=True),  # a drill never counts as recurrence
        opening,  # the incident's own surge
        surge(onset=at(5), detected=at(9)),  # after opening: attached, not before
        surge(onset=T0 - day, detected=T0),  # at the opening moment: not before it
    ]
    rec = report(inc, surges=surges).recurrence
    assert (rec.key, rec.since, rec.until) == ("broadband/ningbo", T0 - 30 * day, T0)
    assert rec.count == 2
    assert [s.detected_at for s in rec.surges] == [T0 - 30 * day, T0 - 9 * day + timedelta(minutes=5)]


def test_recurrence_of_a_drill_looks_at_the_real_key() -> None:
    inc = incident(drill=True, surge_key="drill:broadband/ningbo")
    r = report(inc, surges=[surge(detected=T0 - timedelta(days=3))])
    assert r.drill is True
    assert (r.recurrence.key, r.recurrence.count) == ("broadband/ningbo", 1)


# --- end to end: trigger, fan-out, acks, resolve, then the report over HTTP ------------



@pytest.fixture
async def env(store: Store, catalog: Catalog) -> AsyncIterator[Env]:
    """The app on a real store, against the Twilio sandbox and an SMTP inbox."""
    async for e in make_env(store, catalog):
        yield e



async def test_the_report_over_http_matches_what_the_store_recorded(env: Env, catalog: Catalog) -> None:
    store = env.services.store
    day = timedelta(days=1)
    # history on the key: 10 days back counts as recurrence, 31 days back does not
    await store.record_surge(surge(onset=T0 - 10 * day, detected=T0 - 10 * day + timedelta(minutes=6)))
    await store.record_surge(surge(onset=T0 - 31 * day, detected=T0 - 31 * day + timedelta(minutes=6)))
    body = await env.trigger()  # broadband-outage in ningbo, at T0
    iid = body["id"]
    await env.settle()
    v1 = [d for d in await store.deliveries(iid) if d.key.version == 1]
    first, second = sorted((d for d in v1 if d.key.channel == "sms"), key=lambda d: d.key.person_id)[:2]
    env.clock.advance(timedelta(minutes=3))
    await env.sandbox.reply(first.address, FROM, "1")
    env.clock.advance(timedelta(minutes=5))
    await env.sandbox.reply(second.address, FROM, "确认")
    await env.sandbox.settled()
    leader = body["roles"][0]["holder"]
    env.clock.advance(timedelta(minutes=2))
    assert (await env.client.post(f"/api/incidents/{iid}/ack", json={"person": leader})).status == 200
    env.clock.advance(timedelta(minutes=10))
    assert (await env.client.post(f"/api/incidents/{iid}/resolve", json={"by": leader, "note": "已恢复"})).status == 200
    await env.settle()

    resp = await env.client.get(f"/api/incidents/{iid}/report")
    assert resp.status == 200, await resp.text()
    r = await resp.json()
    assert (r["incident_id"], r["drill"], r["status"]) == (iid, False, "resolved")
    doc = document()
    documented = doc["paths"]["/api/incidents/{id}/report"]["get"]["responses"]["200"]["content"]
    OAS31Validator({"components": doc["components"], **documented["application/json"]["schema"]}).validate(r)

    # delivery: the store's own records of version 1, counted here by status
    v1 = [d for d in await store.deliveries(iid) if d.key.version == 1 and d.key.channel in ("sms", "email")]
    for row in r["delivery"]:
        mine = [d for d in v1 if d.key.channel == row["channel"]]
        assert row["messages"] == len(mine) > 0
        assert row["delivered"] == sum(d.status == DeliveryStatus.delivered for d in mine)
        assert row["sent"] == sum(d.status == DeliveryStatus.sent for d in mine)
        assert row["delivery_rate"] == pytest.approx((row["sent"] + row["delivered"]) / len(mine))
    # everyone in the playbook's audience, and only they, are in scope
    in_scope, _ = audience(catalog.playbooks["broadband-outage"], catalog.contacts, "ningbo", T0.date())
    people = {x.person.id for x in in_scope}
    acks = r["acks"]
    assert acks["version"] == 1 and acks["overall"]["in_scope"] == len(people)
    acked = {a.person_id: a.at for a in await store.acks(iid) if a.version == 1}
    assert set(acked) == {first.key.person_id, second.key.person_id}
    # every message reached them at T0 (the clock stood still while sending)
    assert {d.updated_at for d in v1 if d.key.person_id in acked} == {T0}
    assert acks["overall"]["acked"] == 2 and acks["overall"]["ack_rate"] == pytest.approx(2 / len(people))
    assert (acks["overall"]["median_seconds"], acks["overall"]["p90_seconds"]) == ((180 + 480) / 2, 480)
    assert {p["person_id"] for p in acks["never_acked"]} == people - set(acked)
    assert sum(g["stats"]["in_scope"] for g in acks["by_region"]) == len(people)
    # timeliness: a manual trigger, the script out at once, leader at 10 min, resolved at 20
    t = r["timeliness"]
    assert (t["trigger"], t["to_detect_seconds"], t["to_open_seconds"]) == ("manual", None, 0)
    assert (t["to_first_script_seconds"], t["to_acknowledge_seconds"], t["to_resolve_seconds"]) == (0, 600, 1200)
    lead = next(x for x in r["roles"] if x["role"] == "leader")
    assert (lead["acked_by"], lead["time_to_ack_seconds"], lead["escalations"]) == (leader, 600, 0)
    assert next(n for n in r["notices"] if n["purpose"] == "role_assigned")["messages"] == len(body["roles"])
    rec = r["recurrence"]
    assert (rec["key"], rec["count"]) == ("broadband/ningbo", 1)
    assert datetime.fromisoformat(rec["surges"][0]["detected_at"]) == T0 - 10 * day + timedelta(minutes=6)

    # the printable page carries the same figures
    page = await env.client.get(f"/api/incidents/{iid}/report?format=html")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    never = catalog.contacts.people[sorted(people - set(acked))[0]].name
    for figure in (iid, "宽带大面积故障", "5分30秒", "8分00秒", "20分00秒", f"{2 / len(people) * 100:.1f}%", never,
                   "人工触发", "/static/console.css"):
        assert figure in html, figure
    by_accept = await env.client.get(f"/api/incidents/{iid}/report", headers={"Accept": "text/html"})
    assert by_accept.content_type == "text/html"


async def test_report_errors_keep_the_api_shape(env: Env) -> None:
    resp = await env.client.get("/api/incidents/INC-20261124-nope00/report")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    body = await env.trigger()
    resp = await env.client.get(f"/api/incidents/{body['id']}/report?format=pdf")
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"
    async with aiohttp.ClientSession() as anonymous:  # without the admin token
        async with anonymous.get(env.client.make_url(f"/api/incidents/{body['id']}/report")) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"


# --- the printable page ------------------------------------------------------------------


def test_the_page_shows_every_part_of_a_full_report() -> None:
    leader = RoleAssignment(role="leader", title="应急领导小组组长", chain=["lead", "dep"], level=1,
                            ack_within_seconds=900, assigned_at=T0, acked_by="dep", acked_at=at(21))
    opening = surge(key="drill:broadband/ningbo", onset=at(-15), detected=at(-3), drill=True)
    inc = incident(drill=True, surge_key="drill:broadband/ningbo", surge=opening, roles=[leader],
                   scripts=[version(1)], severity="major")
    timeline = [
        TimelineEvent(at=T0, kind="opened", data={"surge_data": opening.model_dump(mode="json")}),
        TimelineEvent(at=at(15), kind="escalated", data={"role": "leader", "from": "lead", "to": "dep", "level": 1}),
        TimelineEvent(at=at(20), kind="audience_supervisor", data={"version": 1, "not_acknowledged": ["a6"],
                                                                   "messages": 1}),
    ]
    deliveries = [delivery("a1", "sms", DeliveryStatus.delivered, at(1)),
                  delivery("a6", "sms", DeliveryStatus.failed, at(1)),
                  delivery("boss", "sms-supervisor", DeliveryStatus.delivered, at(20))]
    r = report(inc, timeline=timeline, deliveries=deliveries, acks=[ack("a1", at(4))],
               surges=[surge(detected=T0 - timedelta(days=2))])
    env = jinja2.Environment(loader=jinja2.PackageLoader("coordinator.web", "templates"), autoescape=True)
    html = env.get_template("report.html").render(page_context(r, contacts(), {"broadband": "宽带故障"},
                                                               "Asia/Shanghai", "zh"))
    for shown in ("【演练】", "不计入真实事件统计", "宽带故障 / 宁波", "较大", "异常自动发现",
                  "2026-11-24 09:45:00", "12分00秒", "15分00秒",  # onset (local), to detect, to open
                  "50.0%", "3分00秒",  # ack rate, the one ack time
                  "甲六", "未送达", "副组长（dep）", "21分00秒", "督办（告知上级）", "上级督办",
                  "共发现 <strong>1</strong> 次"):
        assert shown in html, shown
    # the same report in English: the words translated, the data (names, regions, titles) as stored
    english = env.get_template("report.html").render(page_context(r, contacts(), {"broadband": "宽带故障"},
                                                                  "Asia/Shanghai", "en"))
    for shown in ("[Drill]", "does not count in the statistics", "宽带故障 / 宁波", "Major", "on a detected surge",
                  "2026-11-24 09:45:00", "12 min 00 s", "15 min 00 s", "50.0%", "3 min 00 s",
                  "甲六", "not delivered", "副组长 (dep)", "21 min 00 s", "supervisors told", "supervisors&#39; notice",
                  "had <strong>1</strong> surge(s)"):
        assert shown in english, shown
    for chinese in ("不计入", "异常自动发现", "未送达", "督办", "分00秒", "共发现"):
        assert chinese not in english, chinese


@pytest.mark.parametrize("seconds, shown", [
    (None, "—"), (0, "0秒"), (59.4, "59秒"), (59.6, "1分00秒"), (185, "3分05秒"), (3600 + 240, "1小时04分"),
])
def test_durations_read_as_people_say_them(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown
