"""Escalation levels numbered one way (issue 22): a level no one can fill is skipped by
the role's chain, and the alert, the escalation's timeline event and the console all
name the playbook's level; alerts are cleared when the incident is resolved. Pure
functions, table-driven, on the test fixtures' playbook."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from coordinator import changes
from coordinator.config.catalog import load_catalog
from coordinator.config.schemas import DoNotContact
from coordinator.models import Incident, RoleAssignment, TimelineEvent
from coordinator.roster import assign_roles, playbook_level, role_alerts
from coordinator.store import Store
from coordinator.web.i18n import translator
from coordinator.web.page import Readable
from coordinator.web.pages.incident_text import alert_parts, alert_text, event_label, timeline_line

from .store.builders import incident as stored_incident, opened

FIXTURES = Path(__file__).parent / "fixtures" / "good"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


def blocked(*people: str) -> tuple[DoNotContact, ...]:
    return tuple(DoNotContact(person=p, reason="休假") for p in people)


@pytest.mark.parametrize(("leave", "chain", "levels", "gaps"), [
    ((), ["p1", "p2"], [0, 1], []),
    (("p1",), ["p2"], [1], [0]),  # the first choice on leave: the backup is level 1, not 0
    (("p1", "p2"), [], [], [0, 1]),
])
def test_the_chain_remembers_the_playbooks_levels(leave: tuple[str, ...], chain: list[str], levels: list[int],
                                                   gaps: list[int]) -> None:
    catalog = load_catalog(FIXTURES)
    contacts = catalog.contacts.__class__(**{**catalog.contacts.__dict__, "do_not_contact": blocked(*leave)})
    playbook = catalog.playbooks["outage"]
    leader = assign_roles(playbook, contacts, T0)[0]
    assert (leader.chain, leader.levels) == (chain, levels)
    assert [playbook_level(leader, i) for i in range(len(chain))] == levels
    alerts = [a for a in role_alerts(playbook, [leader]) if a.level is not None]
    assert [a.level for a in alerts] == gaps
    # the line kept on the incident is the one incidents always had
    assert [a.message for a in alerts] == [f"role leader ({leader.title}): {gap}" for gap in leader.gaps]


def role(chain: list[str], levels: list[int], level: int = 0) -> RoleAssignment:
    return RoleAssignment(role="tech", title="技术支持", chain=chain, levels=levels, level=level,
                          ack_within_seconds=600, assigned_at=T0, deadline=T0 + timedelta(minutes=10))


def incident(*roles: RoleAssignment, alerts: list[str] | None = None) -> Incident:
    return Incident(id="INC-1", playbook="outage", title="断网", severity="major", opened_at=T0, opened_by="p1",
                    roles=list(roles), alerts=alerts or [], updated_at=T0)


@pytest.mark.parametrize(("levels", "to", "shown"), [
    ([0, 2], 1, 2),  # level 1 had no one: the second entry is the playbook's level 2
    ([0, 1], 1, 1),
    ([], 1, 1),  # an incident from before levels were kept: the index
])
def test_an_escalation_names_the_playbooks_level(levels: list[int], to: int, shown: int) -> None:
    inc = incident(role(["a", "b"], levels))
    escalated, events = changes.escalate(inc, T0 + timedelta(minutes=11), "tech", to)
    assert escalated.roles[0].holder == "b" and [e.data["level"] for e in events] == [shown]
    acked, events = changes.ack_roles(escalated, T0 + timedelta(minutes=12), "b", None, "sms")
    assert [e.data["level"] for e in events if e.kind == "role_acked"] == [shown]


def test_resolving_clears_the_alerts_and_says_so() -> None:
    inc = incident(role(["a"], [0]), alerts=["role tech: no one in its escalation chain acknowledged"])
    resolved, events = changes.resolve(inc, T0, "p1", "好了")
    assert resolved.alerts == [] and events[0].data == {"status": "resolved", "note": "好了", "alerts_cleared": 1}
    quiet, events = changes.resolve(incident(role(["a"], [0])), T0, "p1", "")
    assert quiet.alerts == [] and "alerts_cleared" not in events[0].data


LEGACY = [
    ("role tech (技术支持): level 1: no one available (team tech-support, position 宽带运维工程师)",
     {"code": "level_gap", "about": "tech", "level": 1, "assignee": {"team": "tech-support", "position": "宽带运维工程师"}}),
    ("role tech (技术支持): level 0: no one available (rotation tech-oncall)",
     {"code": "level_gap", "about": "tech", "level": 0, "assignee": {"rotation": "tech-oncall"}}),
    ("role tech (技术支持) has no one to hold it", {"code": "unfilled", "about": "tech"}),
    ("role tech: no one in its escalation chain acknowledged", {"code": "exhausted", "about": "tech"}),
    ("something new", {"code": "other"}),
]


@pytest.mark.parametrize(("message", "parts"), LEGACY)
def test_alerts_stored_as_lines_are_read_back(message: str, parts: dict[str, object]) -> None:
    assert alert_parts(message, None) == parts


def test_an_alert_reads_in_either_language() -> None:
    catalog = load_catalog(FIXTURES)
    inc = incident(role(["a"], [0]))
    rd = Readable(catalog, timezone.utc)  # type: ignore[arg-type]
    message = "role tech (技术支持): level 1: no one available (person nobody)"
    zh = alert_text(message, None, inc, rd, translator("zh"))
    en = alert_text(message, None, inc, rd, translator("en"))
    assert zh == "技术支持：第 1 级备岗（人员 nobody）无人可任，已跳过"
    assert en == "技术支持: no one could take backup level 1 (person nobody); skipped"
    exhausted = {"message": "role tech: no one in its escalation chain acknowledged", "role": "tech"}
    assert alert_text(exhausted["message"], exhausted, inc, rd, translator("zh")) == "技术支持：升级链上所有人均未确认"


async def test_the_levels_are_kept_by_either_store(store: Store) -> None:
    """SQLite and Redis alike keep each chain entry's level, and read an incident stored
    before levels were kept (none) as its indexes."""
    tech = role(["a", "b"], [0, 2], level=1)
    created, _ = await store.open_incident(stored_incident("INC-L", roles=[tech, role(["c"], [])]), opened())
    back = await store.get_incident(created.id)
    assert [r.levels for r in back.roles] == [[0, 2], []]
    assert [playbook_level(r) for r in back.roles] == [2, 0]


def test_events_of_other_kinds_read_without_their_keys() -> None:
    """A network alarm's event in words (its name and labels as code), and a kind this page
    has no words for yet: its values, never `key=value` or a raw kind."""
    catalog = load_catalog(FIXTURES)
    rd = Readable(catalog, timezone.utc)  # type: ignore[arg-type]
    inc = incident(role(["a"], [0]))
    zh = translator("zh")
    alarm = TimelineEvent(at=T0, kind="alarm", actor="prometheus", data={
        "source": "prometheus", "name": "OLTDown", "dedup_key": "k1", "summary": "OLT 离线", "labels": "site=nb", "episode": 2})
    assert timeline_line(alarm, inc, rd, zh) == (
        "告警 <code>OLTDown</code> 触发：OLT 离线 · 第 2 次发生 <code class=\"labels\">site=nb</code>")
    later = TimelineEvent(at=T0, kind="card_read", data={"medium": "dingtalk", "count": 3, "ok": True, "ids": ["x"]})
    assert timeline_line(later, inc, rd, zh) == "dingtalk · 3" and event_label("card_read", zh) == "其他"
    assert event_label("escalated", zh) == "升级" and event_label("escalated", translator("en")) == "escalated"
