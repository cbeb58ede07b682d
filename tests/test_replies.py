"""SMS replies acknowledge exactly one thing: the pure decision (table-driven), and the
reproduction end to end (a drill and two real incidents open for the same person; their
"1" acknowledged all three), through the real twilio client, the sandbox's signed
inbound webhook and both stores."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, AsyncIterator

import pytest

from coordinator.config.catalog import Catalog
from coordinator.models import Delivery, DeliveryKey, Incident, RoleAssignment, ScriptVersion
from coordinator.replies import (
    CODE_ALPHABET,
    Reply,
    answer_text,
    decide,
    new_code,
    parse_reply,
    with_code,
)
from coordinator.store import Store

from .test_fanout import FROM, Env, make_env

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("body", "expected"), [
    ("1", Reply("ack")),
    (" 确认 ", Reply("ack")),
    ("收到。", Reply("ack")),
    ("ok", Reply("ack")),
    ("１", Reply("ack")),  # full-width digit
    ("1 k7q", Reply("ack", "K7Q")),
    ("1K7Q", Reply("ack", "K7Q")),
    ("确认　K7Q", Reply("ack", "K7Q")),  # ideographic space
    ("确认收到 K7Q！", Reply("ack", "K7Q")),
    ("K7Q 1", Reply("ack", "K7Q")),
    ("1 K7", Reply("other")),  # not a code
    ("1 K0Q", Reply("other")),  # 0 is not in the alphabet
    ("好的谢谢", Reply("other")),
    ("STOP", Reply("stop")),
    ("unsubscribe", Reply("stop")),
    ("Start", Reply("start")),
])
def test_replies_are_read(body: str, expected: Reply) -> None:
    assert parse_reply(body) == expected


def test_codes_are_short_unambiguous_and_free() -> None:
    taken = {"AAA", "BBB"}
    code = new_code(taken)
    assert len(code) == 3 and code not in taken and set(code) <= set(CODE_ALPHABET)
    assert not set("IO01") & set(CODE_ALPHABET)
    assert with_code("请回复1确认", "K7Q") == "请回复1确认〔事件码K7Q〕"
    assert with_code("回复“1 K7Q”确认（事件码K7Q）", "K7Q") == "回复“1 K7Q”确认（事件码K7Q）"  # placed by the template
    assert with_code("请回复1确认", "") == "请回复1确认"  # an incident from before codes


def incident(iid: str, code: str, *, drill: bool = False, roles: list[RoleAssignment] | None = None,
             versions: tuple[int, ...] = (1,)) -> Incident:
    scripts = [ScriptVersion(version=v, sms="s", email_subject="", email_text="", email_html="", content_hash="h",
                             sms_encoding="UCS-2", sms_segments=1, author="system", created_at=T0, approved_at=T0,
                             approved_by="auto") for v in versions]
    return Incident(id=iid, playbook="p", title=f"事件{iid}", severity="major", region="ningbo", code=code,
                    drill=drill, opened_at=T0, opened_by="x", updated_at=T0, roles=roles or [], scripts=scripts)


def message(iid: str, version: int, channel: str = "sms") -> Delivery:
    return Delivery(key=DeliveryKey(incident_id=iid, version=version, person_id="p1", channel=channel),
                    address="+8613800000001", content_hash="h", updated_at=T0)


def leader_role(acked: bool = False) -> RoleAssignment:
    return RoleAssignment(role="leader", title="组长", chain=["p1", "p2"], ack_within_seconds=900, assigned_at=T0,
                          acked_at=T0 if acked else None)


A, B, D = incident("INC-A", "AAA"), incident("INC-B", "BBB"), incident("DRL-D", "DDD", drill=True)


@pytest.mark.parametrize(("case", "reply", "sent", "incidents", "acked", "expected"), [
    ("a bare 1 takes the newest message, not every open incident",
     Reply("ack"), [message("DRL-D", 1), message("INC-B", 1), message("INC-A", 1)], [A, B, D], {},
     ("DRL-D", None, 1)),
    ("a code picks its incident", Reply("ack", "AAA"),
     [message("DRL-D", 1), message("INC-B", 1), message("INC-A", 1)], [A, B, D], {}, ("INC-A", None, 1)),
    ("an unknown code acknowledges nothing", Reply("ack", "ZZZ"), [message("INC-A", 1)], [A], {}, None),
    ("the newest version sent, not an older one", Reply("ack"), [message("INC-A", 2), message("INC-A", 1)],
     [incident("INC-A", "AAA", versions=(1, 2))], {}, ("INC-A", None, 2)),
    ("a superseded version is not acknowledged by a second 1", Reply("ack"),
     [message("INC-A", 2), message("INC-A", 1)], [incident("INC-A", "AAA", versions=(1, 2))], {"INC-A": {2}}, None),
    ("a reminder acknowledges its version", Reply("ack"), [message("INC-A", 1, "sms-reminder"), message("INC-A", 1)],
     [A], {}, ("INC-A", None, 1)),
    ("a role notice acknowledges the role", Reply("ack"),
     [message("INC-A", 0, "sms-role-leader-assigned"), message("INC-A", 1)],
     [incident("INC-A", "AAA", roles=[leader_role()])], {}, ("INC-A", "leader", None)),
    ("then the next 1 the version", Reply("ack"),
     [message("INC-A", 0, "sms-role-leader-assigned"), message("INC-A", 1)],
     [incident("INC-A", "AAA", roles=[leader_role(acked=True)])], {}, ("INC-A", None, 1)),
    ("an answer or a supervisor's notice is skipped", Reply("ack"),
     [message("INC-B", 0, "sms-answer-v1"), message("INC-A", 1, "sms-supervisor"), message("INC-A", 1)],
     [A, B], {}, ("INC-A", None, 1)),
    ("a closed incident is left alone", Reply("ack"), [message("INC-X", 1), message("INC-A", 1)], [A], {},
     ("INC-A", None, 1)),
    ("everything acknowledged: nothing more", Reply("ack"), [message("INC-A", 1)], [A], {"INC-A": {1}}, None),
])
def test_what_a_reply_acknowledges(
    case: str, reply: Reply, sent: list[Delivery], incidents: list[Incident], acked: dict[str, set[int]],
    expected: tuple[str, str | None, int | None] | None,
) -> None:
    decision = decide("p1", reply, sent, {i.id: i for i in incidents}, acked)
    got = None if decision.target is None else (decision.target.incident_id, decision.target.role,
                                                decision.target.version)
    assert got == expected, case


def test_the_answer_says_what_was_acknowledged_and_what_waits() -> None:
    sent = [message("DRL-D", 1), message("INC-B", 1), message("INC-A", 0, "sms-role-leader-assigned"),
            message("INC-A", 1)]
    both = incident("INC-A", "AAA", roles=[leader_role()])
    decision = decide("p1", Reply("ack", "AAA"), sent, {i.id: i for i in (both, B, D)}, {})
    text = answer_text(decision, lambda incident: {"ningbo": "宁波"}[incident.region])
    assert text == ("已确认：事件INC-A（宁波，事件码AAA）组长角色。本事件尚有1项待确认，请再回复1。"
                    "其他事件待确认，请回复“1 DDD”（事件DRL-D）、“1 BBB”（事件INC-B）。")
    drill = answer_text(decide("p1", Reply("ack"), sent, {i.id: i for i in (both, B, D)}, {}), lambda i: i.region)
    assert drill is not None and drill.startswith("【演练】已确认：事件DRL-D（ningbo，事件码DDD）口径v1。")
    unknown = answer_text(decide("p1", Reply("ack", "ZZZ"), sent, {i.id: i for i in (both, B, D)}, {}),
                          lambda i: i.region)
    assert unknown is not None and unknown.startswith("【演练】未找到事件码ZZZ。")
    assert answer_text(decide("p1", Reply("ack"), [message("INC-B", 1)], {"INC-B": B}, {"INC-B": {1}}),
                       lambda i: i.region) is None


# --- end to end ----------------------------------------------------------------------


@pytest.fixture
async def env(store: Store, catalog: Catalog) -> AsyncIterator[Env]:  # noqa: F811
    async for e in make_env(store, catalog):
        yield e


async def open_three(env: Env) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Two real incidents and a drill in ningbo: the frontline there gets all three."""
    real_a = await env.trigger("mobile-outage")
    await env.settle()
    real_b = await env.trigger("broadband-outage")
    await env.settle()
    resp = await env.client.post("/api/incidents", json={"playbook": "broadband-outage", "region": "ningbo",
                                                         "drill": True, "by": "chen-li"})
    assert resp.status == 201, await resp.text()
    drill = dict(await resp.json())
    await env.settle()
    return real_a, real_b, drill


async def acks_of(env: Env, person: str, *incidents: dict[str, Any]) -> list[tuple[str, int | None, str | None]]:
    store = env.services.store
    out = []
    for inc in incidents:
        out += [(inc["id"], a.version, a.role) for a in await store.acks(inc["id"]) if a.person_id == person]
        roles = (await store.get_incident(inc["id"])).roles
        out += [(inc["id"], None, r.role) for r in roles if r.acked_by == person]
    return sorted(out, key=str)


async def test_a_reply_to_a_drill_acknowledges_the_drill_only(env: Env) -> None:
    """Reproduction: a staff member replied "1" to a drill's script; their script
    acknowledgements were also recorded on the two real open incidents."""
    real_a, real_b, drill = await open_three(env)
    store = env.services.store
    [frontline] = [d for d in await store.deliveries(drill["id"]) if d.key.channel == "sms"][:1]
    person, phone = frontline.key.person_id, frontline.address
    got = [m.body for m in env.sandbox.received_by(phone)]
    codes = {inc["id"]: (await store.get_incident(inc["id"])).code for inc in (real_a, real_b, drill)}
    assert len(set(codes.values())) == 3
    for inc_id, code in codes.items():  # every SMS carries its incident's code
        assert sum(f"〔事件码{code}〕" in body for body in got) == 1, inc_id

    await env.sandbox.reply(phone, FROM, "1")
    await env.sandbox.settled()
    assert await acks_of(env, person, real_a, real_b, drill) == [(drill["id"], 1, None)]
    await env.settle()
    answer = env.sandbox.received_by(phone)[-1].body
    assert answer.startswith("【演练】已确认：宽带大面积故障（宁波，事件码") and codes[drill["id"]] in answer
    assert f"“1 {codes[real_a['id']]}”" in answer and f"“1 {codes[real_b['id']]}”" in answer

    # "1 CODE" takes the incident it names, and only that one
    await env.sandbox.reply(phone, FROM, f"1 {codes[real_a['id']].lower()}")
    await env.sandbox.settled()
    assert await acks_of(env, person, real_a, real_b, drill) == sorted(
        [(drill["id"], 1, None), (real_a["id"], 1, None)], key=str)
    # a repeated bare "1" (the drill is done) acknowledges nothing else
    await env.sandbox.reply(phone, FROM, "确认")
    await env.sandbox.settled()
    assert (real_b["id"], 1, None) not in await acks_of(env, person, real_b)


async def test_a_role_holder_acknowledges_the_role_then_the_script(env: Env, catalog: Catalog) -> None:  # noqa: F811
    body = await env.trigger()
    await env.settle()
    store = env.services.store
    holders = {r["role"]: r["holder"] for r in body["roles"]}
    leader = catalog.contacts.people[holders["leader"]]
    assert leader.phone is not None
    await env.sandbox.reply(leader.phone, FROM, "1")
    await env.sandbox.settled()
    incident = await store.get_incident(body["id"])
    assert incident.role("leader").acked_by == leader.id  # type: ignore[union-attr]
    # only that role: the leader's other roles, if any, still wait
    assert [r.role for r in incident.roles if r.acked_by == leader.id] == ["leader"]


async def test_a_reply_reads_the_phones_messages_not_every_incident(env: Env) -> None:
    """An ack storm: each reply must cost a few indexed reads, not every open incident
    and all of its deliveries (as it did)."""
    await open_three(env)
    store = env.services.store
    sms = [d for inc in await store.list_incidents() for d in await store.deliveries(inc.id) if d.key.channel == "sms"]
    phone = sms[0].address
    calls: list[str] = []
    for name in ("list_incidents", "deliveries", "acks", "timeline"):
        original = getattr(store, name)

        def spy(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        setattr(store, name, spy)
    try:
        await env.sandbox.reply(phone, FROM, "1")
        await env.sandbox.settled()
    finally:
        for name in ("list_incidents", "deliveries", "acks", "timeline"):
            delattr(store, name)
    assert calls == []
