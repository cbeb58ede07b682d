"""How an incident's timeline, alerts, actors and escalation levels read on the console,
in the page's language (web/i18n.py): names for ids (宁波, not ningbo; 陈丽, not
chen-li), role titles for role ids, labels for severities and channels, and never a
`key=value` dump of an event's data.

Alerts are kept on the incident as English lines (Incident.alerts); the timeline event
that raised each one carries its parts (roster.RoleAlert.data), and an incident from
before that is read back from the line itself. A network alarm's events read as words
around the monitoring system's own identifiers (its name and labels, shown as code)."""

from __future__ import annotations

import re
from typing import Any, Callable

from markupsafe import Markup, escape

from ...models import Incident, TimelineEvent
from ..i18n import MESSAGES
from ..page import Readable

T = Callable[[str], str]

_GAP = re.compile(r"^role (?P<about>\S+) \(.*\): level (?P<level>\d+): no one available \((?P<who>.*)\)$")
_UNFILLED = re.compile(r"^role (?P<about>\S+) \(.*\) has no one to hold it$")
_EXHAUSTED = re.compile(r"^role (?P<about>\S+): no one in its escalation chain acknowledged$")
_WHO = re.compile(r"^(?:team (?P<team>[^,]+)(?:, position (?P<position>.+))?"
                  r"|rotation (?P<rotation>.+)|person (?P<person>.+))$")


def level_text(level: int, t: T) -> str:
    """Level 0 is the first choice; n the n-th backup, as the playbook lists them."""
    return t("level.first") if level == 0 else t("level.backup") % level


def actor_text(actor: str, rd: Readable, t: T) -> str:
    """Who did it: a person's name; the system, the detector, an automatic approval, a
    drill, the admin token or a network alarm's source in words."""
    if actor == "system":
        return ""
    if actor == "auto":
        return t("script.auto")
    if actor == "surge-detector":
        return t("incident.by_detector")
    if actor.startswith("drill:"):
        return t("actor.drill")
    if actor not in rd.catalog.contacts.people and f"actor.{actor}" in MESSAGES:
        return t(f"actor.{actor}")  # admin (the API token), cli, scheduler, a network alarm's source
    return rd.person(actor)


SOURCE_NAMES = {"alertmanager": "Alertmanager", "pagerduty": "PagerDuty"}


def event_actor(event: TimelineEvent, rd: Readable, t: T) -> str:
    """Who acted, as the timeline shows it: a network alarm's own events name only its
    source (the event's label already says 网络告警)."""
    if event.kind in ALARM_KINDS and event.actor in SOURCE_NAMES:
        return SOURCE_NAMES[event.actor]
    return actor_text(event.actor, rd, t)


def via_text(via: Any, t: T) -> str:
    return t(f"via.{via}") if f"via.{via}" in MESSAGES else t("via.other")


def role_title(incident: Incident, role_id: Any) -> str:
    found = incident.role(str(role_id)) if role_id is not None else None
    return found.title if found is not None else str(role_id or "—")


def alert_parts(message: str, event_data: dict[str, Any] | None) -> dict[str, Any]:
    """The parts of an alert: from its event when it has them, else read from the line.
    `code` is level_gap, unfilled, exhausted or other."""
    if event_data and event_data.get("code"):
        return event_data
    if event_data and event_data.get("role"):
        return {"code": "exhausted", "about": event_data["role"]}
    if found := _GAP.match(message):
        who = _WHO.match(found["who"])
        assignee = {k: v for k, v in (who.groupdict() if who else {}).items() if v}
        return {"code": "level_gap", "about": found["about"], "level": int(found["level"]), "assignee": assignee}
    for code, pattern in (("unfilled", _UNFILLED), ("exhausted", _EXHAUSTED)):
        if found := pattern.match(message):
            return {"code": code, "about": found["about"]}
    return {"code": "other"}


def assignee_text(assignee: dict[str, Any], rd: Readable, t: T) -> str:
    if assignee.get("team"):
        team = t("alert.team") % rd.team(str(assignee["team"]))
        return t("alert.position") % (team, assignee["position"]) if assignee.get("position") else team
    if assignee.get("rotation"):
        rotation = rd.catalog.contacts.rotations.get(str(assignee["rotation"]))
        return t("alert.rotation") % (rotation.name if rotation else assignee["rotation"])
    return t("alert.person") % rd.person(str(assignee.get("person")))


def alert_text(message: str, event_data: dict[str, Any] | None, incident: Incident, rd: Readable, t: T) -> str:
    parts = alert_parts(message, event_data)
    role = role_title(incident, parts.get("about"))
    if parts["code"] == "level_gap":
        return t("alert.level_gap") % {"role": role, "level": level_text(int(parts.get("level") or 0), t),
                                       "who": assignee_text(parts.get("assignee") or {}, rd, t)}
    if parts["code"] in ("unfilled", "exhausted"):
        return t(f"alert.{parts['code']}") % role
    return t("alert.other")


def open_alerts(incident: Incident, timeline: list[TimelineEvent], rd: Readable, t: T) -> list[str]:
    """The incident's alerts still open (a resolved incident has none), in words."""
    raised = {str(e.data.get("message")): e.data for e in timeline if e.kind == "alert"}
    return [alert_text(a, raised.get(a), incident, rd, t) for a in incident.alerts]


ALARM_KINDS = ("alarm", "alarm_cleared", "alarm_acknowledged")
# The note alarms/intake.py resolves an incident with when its alarms have cleared (English,
# for the log and the API), as the page reads it.
_ALARMS_CLEARED = re.compile(r"^alarm (?P<name>.+) cleared; every alarm on the incident has cleared$")


def note_text(note: str, t: T) -> Markup:
    """A status change's note: what a leader typed as it is; the service's own in words."""
    if found := _ALARMS_CLEARED.match(note):
        return Markup(escape(t("tl.alarms_cleared_note"))) % Markup("<code>{}</code>").format(found["name"])
    return escape(note)


def alarm_line(kind: str, data: dict[str, Any], t: T) -> Markup:
    """A network alarm (alarms.timeline_data) in words: 告警 BaseStationDown 触发：基站退服
    · 第 2 次发生, then its labels. The alarm's name and labels are the monitoring
    system's identifiers, shown as code; the summary is the source's own text. Who sent
    it (Alertmanager, PagerDuty) is the event's actor."""
    name = Markup("<code>{}</code>").format(data.get("name") or "—")
    line = Markup(escape(t(f"tl.{kind}"))) % {"name": name}
    if data.get("summary"):
        line += Markup(escape(t("pages.colon"))) + str(data["summary"])
    if data.get("episode"):
        line += " · " + t("tl.episode") % int(data["episode"])
    if data.get("labels"):
        line += Markup(' <code class="labels">{}</code>').format(data["labels"])
    return line


def timeline_line(event: TimelineEvent, incident: Incident, rd: Readable, t: T) -> str:
    """What an event says, in a short line of the page's language (a network alarm's as
    markup: alarm_line)."""
    data, kind = event.data, event.kind
    version = data.get("version")
    if kind == "opened":
        playbook = incident.plan.title if incident.playbook_snapshot else str(data.get("playbook"))
        line = t("tl.opened") % {"playbook": playbook, "severity": t(f"severity.{data.get('severity')}")}
        return line + (" · " + t("tl.opened_surge") % rd.stream(str(data["surge"])) if data.get("surge_data") else "")
    if kind == "role_assigned":
        return t("tl.role_holder") % (role_title(incident, data.get("role")), rd.person(data.get("person")))
    if kind == "role_acked":
        return t("tl.role_acked") % {"role": role_title(incident, data.get("role")),
                                     "level": level_text(int(data.get("level") or 0), t),
                                     "via": via_text(data.get("via"), t)}
    if kind == "escalated":
        return t("tl.escalated") % {"role": role_title(incident, data.get("role")), "from": rd.person(data.get("from")),
                                    "to": rd.person(data.get("to")), "level": level_text(int(data.get("level") or 0), t)}
    if kind == "alert":
        return alert_text(str(data.get("message", "")), data, incident, rd, t)
    if kind == "status":
        line = t(f"status.{data.get('status')}")
        if data.get("alerts_cleared"):
            line += " · " + t("alert.cleared") % data["alerts_cleared"]
        return escape(line) + (Markup(" — ") + note_text(str(data["note"]), t) if data.get("note") else "")
    if kind == "severity":
        line = t("tl.severity") % {"from": t(f"severity.{data.get('from')}"), "to": t(f"severity.{data.get('to')}")}
        return line + (f" — {data['reason']}" if data.get("reason") else "")
    if kind == "note":
        return str(data.get("text", ""))
    if kind == "surge_attached":
        surge = data.get("surge") or {}
        return t("tl.surge") % {"observed": int(surge.get("observed", 0)), "expected": float(surge.get("expected", 0.0)),
                                "severity": t(f"severity.{data.get('severity')}")}
    if kind == "script_drafted":
        line = t("tl.script_drafted") % {"v": int(version or 0), "kind": t(f"kind.{data.get('kind', 'script')}"),
                                         "segments": int(data.get("sms_segments") or 0)}
        missing = data.get("missing") or []
        return line + (" · " + t("tl.missing") % param_labels(incident, missing, t) if missing else "")
    if kind == "script_sent":
        return t("tl.script_sent") % {"v": int(version or 0), "people": int(data.get("recipients") or 0),
                                      "messages": int(data.get("deliveries") or 0)}
    if kind in ("script_acked", "script_approved", "remind_requested"):
        if "via" not in data:
            return f"v{version}"
        return t("tl.acked") % {"v": int(version or 0), "via": via_text(data["via"], t)}
    if kind in ("audience_reminder", "audience_supervisor"):
        return t("tl.chase") % {"v": int(version or 0), "n": len(data.get("not_acknowledged") or []),
                                "m": int(data.get("messages") or 0)}
    if kind == "delivery_failed":
        line = t("tl.failed") % {"person": rd.person(data.get("person")),
                                 "channel": t(f"channel.{data.get('channel', 'sms')}"), "error": data.get("error")}
        fallback = data.get("fallback")
        if fallback == "sms":  # the person's next phone (its place, never the number)
            return f"{line} → {t('tl.fallback_phone') % {'n': int(data.get('phone') or 2)}}"
        then = "tl.fallback_email" if fallback == "email" else "tl.fallback_none" if not fallback else "tl.fallback_done"
        return f"{line} → {t(then)}"
    if kind == "next_channel":
        text = t("tl.next_channel") % {"v": int(version or 0), "n": len(data.get("not_delivered") or []),
                                       "m": int(data.get("emails") or 0)}
        return text + (t("tl.next_phone") % {"n": int(data["phones"])} if data.get("phones") else "")
    if kind == "remind_roles":
        waiting = data.get("unacknowledged") or {}
        return t("tl.remind_roles") % t("stream.list_sep").join(
            f"{role_title(incident, r)} {rd.person(p)}" for r, p in waiting.items())
    if kind == "status_update" and data.get("sent") is False:
        return t("tl.update_skipped")
    if kind == "follow_up":
        action = str(data.get("action", ""))
        told = t("stream.list_sep").join(rd.person(p) for p in (data.get("notify") or {}).values() if p)
        return t("tl.follow_up") % {"action": t(f"followup.{action}"), "who": told or "—"}
    if kind in ALARM_KINDS:
        return alarm_line(kind, data, t)
    if data.get("occurrence"):
        return t("tl.occurrence") % int(data["occurrence"])
    # A kind added later: its plain values, never its keys.
    return " · ".join(str(v) for v in data.values() if isinstance(v, (str, int)) and not isinstance(v, bool) and v != "")


def event_label(kind: str, t: T) -> str:
    """The event's kind in words; one this page has no words for yet reads as "other"."""
    return t(f"event.{kind}") if f"event.{kind}" in MESSAGES else t("event.other")


def param_labels(incident: Incident, names: list[str], t: T) -> str:
    """A script's parameters by their labels (故障原因, not cause)."""
    params = incident.plan.script.params if incident.playbook_snapshot else {}
    return t("stream.list_sep").join(params[n].label if n in params else n for n in names)
