"""The incident's state changes, pure: (incident, now, ...) -> (incident, events), each
case a row."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

from coordinator import changes
from coordinator.config.catalog import Catalog
from coordinator.errors import InvalidAction, ScriptError
from coordinator.models import Incident, IncidentStatus, RoleAssignment, ScriptKind, ScriptVersion, Surge

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
LATER = T0 + timedelta(minutes=10)


def role(name: str, chain: list[str], level: int = 0, acked: str | None = None) -> RoleAssignment:
    return RoleAssignment(role=name, title=name, chain=chain, level=level, ack_within_seconds=600, assigned_at=T0,
                          deadline=T0 + timedelta(minutes=10), acked_by=acked, acked_at=T0 if acked else None)


def version(n: int, kind: ScriptKind = ScriptKind.script, missing: list[str] | None = None,
            approved: bool = False) -> ScriptVersion:
    return ScriptVersion(version=n, kind=kind, sms="口径", email_subject="s", email_text="t", email_html="h",
                         content_hash=f"h{n}", sms_encoding="UCS-2", sms_segments=1, missing=missing or [],
                         author="lead", created_at=T0, approved_by="lead" if approved else None,
                         approved_at=T0 if approved else None)


def surge(observed: int, ratio: float) -> Surge:
    return Surge(key="broadband/hangzhou", category="broadband", region="hangzhou", onset=T0, detected_at=T0,
                 observed=observed, expected=5.0, ratio=ratio, score=9.0)


@pytest.fixture
def incident(catalog: Catalog) -> Incident:
    return Incident(id="INC-1", playbook="broadband-outage", title="宽带故障", severity="minor", region="hangzhou",
                    opened_at=T0, opened_by="surge", updated_at=T0, playbook_snapshot=catalog.playbooks["broadband-outage"],
                    roles=[role("leader", ["lead", "dep"]), role("tech", ["eng", "eng2", "eng3"])])


def with_(inc: Incident, **update: Any) -> Incident:
    return inc.model_copy(update=update)


# (name, how to set the incident up, the change, what the result must show, the event kinds)
CASES: list[tuple[str, Callable[[Incident], Incident], Callable[[Incident], changes.Changed],
                  Callable[[Incident], Any], Any, list[str]]] = [
    ("leader acks: acknowledged", lambda i: i, lambda i: changes.ack_roles(i, LATER, "lead", None, "sms"),
     lambda i: (i.status, i.acknowledged_at, i.roles[0].acked_by), (IncidentStatus.acknowledged, LATER, "lead"),
     ["role_acked", "status"]),
    ("tech acks: incident still open", lambda i: i, lambda i: changes.ack_roles(i, LATER, "eng", "tech", "api"),
     lambda i: (i.status, i.roles[1].acked_by), (IncidentStatus.open, "eng"), ["role_acked"]),
    ("ack again: nothing new", lambda i: changes.ack_roles(i, T0, "eng", None, "api")[0],
     lambda i: changes.ack_roles(i, LATER, "eng", None, "api"), lambda i: i.roles[1].acked_at, T0, []),
    ("scripted stays scripted when the leader acks",
     lambda i: with_(i, status=IncidentStatus.scripted, scripted_at=T0),
     lambda i: changes.ack_roles(i, LATER, "lead", None, "sms"), lambda i: (i.status, i.acknowledged_at),
     (IncidentStatus.scripted, LATER), ["role_acked", "status"]),
    ("a backup not yet reached cannot ack", lambda i: i, lambda i: changes.ack_roles(i, LATER, "eng2", None, "api"),
     lambda i: i.roles[1].acked_by, None, []),
    ("bigger surge: peak kept, severity raised", lambda i: with_(i, surge=surge(10, 2.0), surge_count=1),
     lambda i: changes.attach_surge(i, LATER, surge(500, 20.0)), lambda i: (i.surge_count, i.surge.observed),
     (2, 500), ["surge_attached"]),
    ("smaller surge: peak stays", lambda i: with_(i, surge=surge(50, 5.0), surge_count=1),
     lambda i: changes.attach_surge(i, LATER, surge(10, 2.0)), lambda i: (i.surge_count, i.surge.observed),
     (2, 50), ["surge_attached"]),
    ("severity changed", lambda i: i, lambda i: changes.set_severity(i, LATER, "critical", "lead", "大面积"),
     lambda i: i.severity, "critical", ["severity"]),
    ("severity unchanged: no event", lambda i: i, lambda i: changes.set_severity(i, LATER, "minor", "lead", ""),
     lambda i: i.severity, "minor", []),
    ("resolve", lambda i: i, lambda i: changes.resolve(i, LATER, "lead", "恢复"),
     lambda i: (i.status, i.resolved_at), (IncidentStatus.resolved, LATER), ["status"]),
    ("escalate tech to level 1", lambda i: i, lambda i: changes.escalate(i, LATER, "tech", 1),
     lambda i: (i.roles[1].holder, i.roles[1].deadline), ("eng2", LATER + timedelta(seconds=600)), ["escalated"]),
    ("escalation never goes down", lambda i: changes.escalate(i, T0, "tech", 2)[0],
     lambda i: changes.escalate(i, LATER, "tech", 1), lambda i: i.roles[1].holder, "eng3", []),
    ("an acknowledged role is not escalated", lambda i: changes.ack_roles(i, T0, "eng", "tech", "api")[0],
     lambda i: changes.escalate(i, LATER, "tech", 1), lambda i: i.roles[1].holder, "eng", []),
    ("alert", lambda i: i, lambda i: changes.alert(i, LATER, "role tech: no one", "tech"),
     lambda i: i.alerts, ["role tech: no one"], ["alert"]),
    ("close at follow-up", lambda i: i, lambda i: changes.close(i, LATER, i.plan.follow_up),
     lambda i: (i.status, i.closed_at), (IncidentStatus.closed, LATER), ["follow_up", "status"]),
    ("add a version", lambda i: i, lambda i: changes.add_version(i, LATER, version(1), "lead"),
     lambda i: [v.version for v in i.scripts], [1], ["script_drafted"]),
    ("approve the first script: scripted", lambda i: with_(i, scripts=[version(1)]),
     lambda i: changes.approve(i, LATER, 1, "lead"), lambda i: (i.status, i.scripted_at, i.scripts[0].approved_by),
     (IncidentStatus.scripted, LATER, "lead"), ["script_approved", "status"]),
    ("approve an update: status unchanged", lambda i: with_(i, scripts=[version(1, approved=True),
                                                                      version(2, ScriptKind.update)],
                                                          status=IncidentStatus.scripted, scripted_at=T0),
     lambda i: changes.approve(i, LATER, 2, "lead"), lambda i: (i.status, i.scripted_at),
     (IncidentStatus.scripted, T0), ["script_approved"]),
    ("approve again: nothing", lambda i: with_(i, scripts=[version(1, approved=True)]),
     lambda i: changes.approve(i, LATER, 1, "dep"), lambda i: i.scripts[0].approved_by, "lead", []),
]


@pytest.mark.parametrize("name, setup, change, show, expected, kinds", CASES, ids=[c[0] for c in CASES])
def test_a_change(incident: Incident, name: str, setup: Callable[[Incident], Incident],
                  change: Callable[[Incident], changes.Changed], show: Callable[[Incident], Any], expected: Any,
                  kinds: list[str]) -> None:
    before = setup(incident)
    after, events = change(before)
    assert show(after) == expected
    assert [e.kind for e in events] == kinds
    assert all(e.at == LATER for e in events)
    assert change(before) == (after, events)  # pure: the same again


REFUSED: list[tuple[str, Callable[[Incident], Incident], Callable[[Incident], changes.Changed], type[Exception]]] = [
    ("ack on a resolved incident", lambda i: with_(i, status=IncidentStatus.resolved),
     lambda i: changes.ack_roles(i, LATER, "lead", None, "sms"), InvalidAction),
    ("ack by someone with no role", lambda i: i, lambda i: changes.ack_roles(i, LATER, "stranger", None, "sms"),
     InvalidAction),
    ("resolve twice", lambda i: with_(i, status=IncidentStatus.resolved),
     lambda i: changes.resolve(i, LATER, "lead", ""), InvalidAction),
    ("an unknown severity", lambda i: i, lambda i: changes.set_severity(i, LATER, "huge", "lead", ""), InvalidAction),
    ("approve a missing version", lambda i: i, lambda i: changes.approve(i, LATER, 3, "lead"), ScriptError),
    ("approve a version lacking params", lambda i: with_(i, scripts=[version(1, missing=["eta"])]),
     lambda i: changes.approve(i, LATER, 1, "lead"), ScriptError),
    ("draft on a closed incident", lambda i: with_(i, status=IncidentStatus.closed),
     lambda i: changes.add_version(i, LATER, version(1), "lead"), ScriptError),
]


@pytest.mark.parametrize("name, setup, change, error", REFUSED, ids=[c[0] for c in REFUSED])
def test_a_change_that_does_not_fit_is_refused(incident: Incident, name: str, setup: Callable[[Incident], Incident],
                                                change: Callable[[Incident], changes.Changed],
                                                error: type[Exception]) -> None:
    with pytest.raises(error):
        change(setup(incident))
