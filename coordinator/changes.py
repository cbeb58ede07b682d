"""What happens to an incident, as pure functions: each takes the latest copy and `now`
and returns the changed copy with the timeline events that tell it. IncidentUpdates
applies them with compare-and-set (and may apply one twice on a concurrent save), so
none has a side effect. Raises InvalidAction or ScriptError when the change does not fit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .clock import iso as _iso
from .errors import InvalidAction, ScriptError
from .models import Incident, IncidentStatus, ScriptKind, ScriptVersion, Surge, TimelineEvent
from .playbooks import SEVERITY_ORDER, severity_for
from .roster import playbook_level
from .config.schemas import FollowUp

Changed = tuple[Incident, list[TimelineEvent]]


def attach_surge(inc: Incident, now: datetime, surge: Surge) -> Changed:
    """Another surge on the incident's key: counted, the peak kept, the severity raised
    to what the playbook gives the larger surge (never lowered)."""
    peak = inc.surge if inc.surge is not None and inc.surge.observed >= surge.observed else surge
    level = max(inc.severity, severity_for(inc.plan.severity, surge), key=SEVERITY_ORDER.index)
    event = TimelineEvent(at=now, kind="surge_attached", data={"surge": surge.model_dump(mode="json"), "severity": level})
    return inc.model_copy(update={"surge_count": inc.surge_count + 1, "surge": peak, "severity": level}), [event]


def ack_roles(inc: Incident, now: datetime, person: str, role: str | None, via: str) -> Changed:
    """`person` acknowledges `role`, or every role whose chain up to now names them. The
    leader's acknowledgement (the playbook's first role) makes the incident acknowledged."""
    if not inc.is_open:
        raise InvalidAction(f"incident {inc.id} is {inc.status.value}")
    roles, events = [], []
    for r in inc.roles:
        mine = person in r.chain[: r.level + 1] and (role is None or r.role == role)
        if mine and r.acked_at is None:
            r = r.model_copy(update={"acked_by": person, "acked_at": now})
            events.append(TimelineEvent(at=now, kind="role_acked", actor=person,
                                        data={"role": r.role, "via": via, "level": playbook_level(r)}))
        roles.append(r)
    if not events and not any(person in r.chain and (role is None or r.role == role) for r in inc.roles):
        raise InvalidAction(f"{person} holds no role{f' {role}' if role else ''} on incident {inc.id}")
    update: dict[str, Any] = {"roles": roles}
    if inc.acknowledged_at is None and roles and roles[0].acked_at is not None:
        update["acknowledged_at"] = now
        # The status only moves forward: with an auto-approved script the incident may
        # be scripted before its leader acknowledges.
        if inc.status == IncidentStatus.open:
            update["status"] = IncidentStatus.acknowledged
        events.append(TimelineEvent(at=now, kind="status", actor=person, data={"status": "acknowledged"}))
    return inc.model_copy(update=update), events


def add_version(inc: Incident, now: datetime, version: ScriptVersion, author: str) -> Changed:
    """A drafted script version added, unapproved."""
    if inc.status == IncidentStatus.closed:
        raise ScriptError(f"incident {inc.id} is closed")
    event = TimelineEvent(at=now, kind="script_drafted", actor=author, data={
        "version": version.version, "kind": version.kind.value, "hash": version.content_hash,
        "sms_segments": version.sms_segments, "sms_encoding": version.sms_encoding, "missing": version.missing})
    return inc.model_copy(update={"scripts": [*inc.scripts, version]}), [event]


def approve(inc: Incident, now: datetime, version: int, by: str) -> Changed:
    """`version` approved by `by`; the first approved script makes the incident scripted.
    Approving an approved version changes nothing."""
    found = inc.script(version)
    if found is None:
        raise ScriptError(f"incident {inc.id} has no script version {version}")
    if found.approved:
        return inc, []
    if found.missing:
        raise ScriptError(f"version {version} still lacks {', '.join(found.missing)}: draft a new one")
    scripts = [v.model_copy(update={"approved_by": by, "approved_at": now}) if v.version == version else v
               for v in inc.scripts]
    update: dict[str, Any] = {"scripts": scripts}
    events = [TimelineEvent(at=now, kind="script_approved", actor=by, data={"version": version})]
    if found.kind == ScriptKind.script and inc.scripted_at is None and inc.is_open:
        update.update(status=IncidentStatus.scripted, scripted_at=now)
        events.append(TimelineEvent(at=now, kind="status", actor=by, data={"status": "scripted"}))
    return inc.model_copy(update=update), events


def set_severity(inc: Incident, now: datetime, severity: str, actor: str, reason: str) -> Changed:
    if severity not in SEVERITY_ORDER:
        raise InvalidAction(f"unknown severity '{severity}' (one of {', '.join(SEVERITY_ORDER)})")
    if inc.severity == severity:
        return inc, []
    event = TimelineEvent(at=now, kind="severity", actor=actor,
                          data={"from": inc.severity, "to": severity, "reason": reason})
    return inc.model_copy(update={"severity": severity}), [event]


def resolve(inc: Incident, now: datetime, actor: str, note: str) -> Changed:
    """The incident is over: its open alerts are cleared with it (the timeline keeps them,
    and the resolution says how many it closed)."""
    if not inc.is_open:
        raise InvalidAction(f"incident {inc.id} is already {inc.status.value}")
    data: dict[str, Any] = {"status": "resolved", "note": note}
    if inc.alerts:
        data["alerts_cleared"] = len(inc.alerts)
    event = TimelineEvent(at=now, kind="status", actor=actor, data=data)
    return inc.model_copy(update={"status": IncidentStatus.resolved, "resolved_at": now, "alerts": []}), [event]


def escalate(inc: Incident, now: datetime, role: str, level: int) -> Changed:
    """`role`, not acknowledged, moves up its chain to entry `level` (never down), with a
    new deadline from now. The event names the playbook's level (roster.playbook_level)."""
    roles, events = [], []
    for r in inc.roles:
        if r.role == role and r.acked_at is None and r.level < level:
            previous = r.holder
            deadline = now + timedelta(seconds=r.ack_within_seconds)
            r = r.model_copy(update={"level": level, "deadline": deadline})
            events.append(TimelineEvent(at=now, kind="escalated", data={
                "role": r.role, "from": previous, "to": r.holder, "level": playbook_level(r),
                "deadline": _iso(deadline)}))
        roles.append(r)
    return inc.model_copy(update={"roles": roles}), events


def alert(inc: Incident, now: datetime, message: str, role: str | None) -> Changed:
    event = TimelineEvent(at=now, kind="alert", data={"message": message, "role": role})
    return inc.model_copy(update={"alerts": [*inc.alerts, message]}), [event]


def close(inc: Incident, now: datetime, follow: FollowUp) -> Changed:
    """The follow-up is due: the incident closes, telling the roles it names."""
    holders = {r.role: r.holder for r in inc.roles if r.role in follow.notify_roles}
    events = [
        TimelineEvent(at=now, kind="follow_up", data={"action": follow.action, "notify": holders}),
        TimelineEvent(at=now, kind="status", data={"status": "closed"}),
    ]
    return inc.model_copy(update={"status": IncidentStatus.closed, "closed_at": now}), events
