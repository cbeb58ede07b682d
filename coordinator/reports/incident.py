"""The evaluation of one incident, as an emergency plan asks for it: how fast it was
detected, opened, scripted and resolved; whether the official script reached the
frontline and was acknowledged, by whom and how fast; which roles answered and which
escalated; and whether the same trouble came back (surges on the key in the 30 days
before). Drills end in the same report.

Pure: `build_report` takes what the store recorded and the contacts, and `now` (the
moment the report describes); it reads nothing and writes nothing. Durations are
seconds (float); None where a figure does not apply or has not happened yet.

What "reached" means throughout: a delivery whose status is `sent` (accepted by the
provider) or `delivered` (the carrier's receipt). The store keeps one moment per
delivery, that of its latest status (`updated_at`), so the moment a message reached
someone is its acceptance for email and for SMS without a receipt yet, and the
receipt for a delivered SMS (a few seconds after acceptance).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Sequence

from ..clock import Clock
from ..config.catalog import Contacts
from ..models import (
    DRILL_PREFIX,
    Ack,
    Delivery,
    DeliveryKey,
    DeliveryStatus,
    Incident,
    RoleAssignment,
    ScriptKind,
    Surge,
    TimelineEvent,
)
from ..roster import playbook_level
from ..store import Store
from .people import MESSENGERS, people_channels, read_figures
from .parts import (
    Acknowledgements,
    AckStats,
    ChannelDelivery,
    Chase,
    ChaseKind,
    Escalation,
    GroupAcks,
    IncidentReport,
    NoticeCount,
    PastSurge,
    Purpose,
    Recurrence,
    RoleReport,
    Timeliness,
    Unacknowledged,
    median,
    percentile,
)

SCRIPT_CHANNELS = ("sms", "email")
RECURRENCE_WINDOW = timedelta(days=30)
REACHED = frozenset({DeliveryStatus.sent, DeliveryStatus.delivered, DeliveryStatus.read})
UNKNOWN = "-"  # team / region of someone no longer in the contacts


def script_channels(script_msgs: Sequence[Delivery]) -> tuple[str, ...]:
    """The channels a script's figures are shown for: SMS and email always, a messenger
    when some of the script went out on it."""
    return SCRIPT_CHANNELS + tuple(m for m in MESSENGERS if any(d.key.medium == m for d in script_msgs))


def build_report(
    incident: Incident,
    *,
    timeline: Sequence[TimelineEvent],
    deliveries: Sequence[Delivery],
    acks: Sequence[Ack],
    contacts: Contacts,
    surges: Sequence[Surge],
    now: datetime,
) -> IncidentReport:
    """The report of `incident` as of `now`, from its timeline, deliveries and acks,
    the contacts (names, teams, regions of the people) and the recorded surges (any
    superset of those on its key in the window: they are filtered here)."""
    wording = {v.version for v in incident.scripts if v.kind == ScriptKind.script}
    script_msgs = [d for d in deliveries if d.key.is_script and d.key.version in wording]
    approved = {v.version: v.approved_at for v in incident.scripts if v.approved_at is not None}
    opening = opening_surge(incident, timeline)
    return IncidentReport(
        incident_id=incident.id, title=incident.title, playbook=incident.playbook, category=incident.category,
        region=incident.region, severity=incident.severity, status=incident.status.value, drill=incident.drill,
        opened_by=incident.opened_by, generated_at=now,
        timeliness=timeliness(incident, opening, script_msgs),
        delivery=[channel_delivery(channel, script_msgs, approved) for channel in script_channels(script_msgs)],
        acks=acknowledgements(incident, script_msgs, acks, contacts),
        roles=[role_report(r, timeline, contacts) for r in incident.roles],
        escalations=escalations(timeline),
        chases=chases(timeline),
        notices=notices(deliveries),
        recurrence=recurrence(incident, opening, surges),
        people=people_channels(incident, script_msgs, acks, contacts),
    )


# --- timeliness --------------------------------------------------------------------


def opening_surge(incident: Incident, timeline: Sequence[TimelineEvent]) -> Surge | None:
    """The surge that opened the incident, as recorded on its `opened` event
    (`incident.surge` is the largest one attached since, not the first)."""
    opened = next((e for e in timeline if e.kind == "opened"), None)
    if opened is None:
        return incident.surge
    data = opened.data.get("surge_data")
    return Surge.model_validate(data) if data else None


def timeliness(incident: Incident, opening: Surge | None, script_msgs: Sequence[Delivery]) -> Timeliness:
    opened = incident.opened_at
    first = min((d.updated_at for d in script_msgs if d.status in REACHED), default=None)
    return Timeliness(
        trigger="surge" if opening else "manual",
        onset=opening.onset if opening else None,
        detected_at=opening.detected_at if opening else None,
        opened_at=opened,
        acknowledged_at=incident.acknowledged_at,
        scripted_at=incident.scripted_at,
        first_script_at=first,
        resolved_at=incident.resolved_at,
        to_detect_seconds=_seconds(opening.onset, opening.detected_at) if opening else None,
        to_open_seconds=(opened - opening.onset).total_seconds() if opening else 0.0,
        to_acknowledge_seconds=_seconds(opened, incident.acknowledged_at),
        to_approve_seconds=_seconds(opened, incident.scripted_at),
        to_first_script_seconds=_seconds(opened, first),
        to_resolve_seconds=_seconds(opened, incident.resolved_at),
    )


# --- delivery ----------------------------------------------------------------------


def channel_delivery(channel: str, script_msgs: Sequence[Delivery],
                     approved: dict[int, datetime] | None = None) -> ChannelDelivery:
    mine = [d for d in script_msgs if d.key.medium == channel]
    read, read_rate, to_read = read_figures(channel, mine, approved or {})
    by_status = {s: sum(1 for d in mine if d.status == s) for s in DeliveryStatus}
    if channel == "email":
        fell_back = sum(1 for d in mine if d.fell_back)
    else:
        emailed = {(d.key.version, d.key.person_id) for d in script_msgs if d.key.medium == "email" and d.fell_back}
        fell_back = sum(1 for d in mine if (d.key.version, d.key.person_id) in emailed)
    reached = by_status[DeliveryStatus.sent] + by_status[DeliveryStatus.delivered] + read
    return ChannelDelivery(
        channel=channel, messages=len(mine), recipients=len({d.key.person_id for d in mine}),
        queued=by_status[DeliveryStatus.queued] + by_status[DeliveryStatus.sending],
        sent=by_status[DeliveryStatus.sent], delivered=by_status[DeliveryStatus.delivered],
        failed=by_status[DeliveryStatus.failed] + by_status[DeliveryStatus.undelivered],
        fell_back=fell_back, delivery_rate=_ratio(reached, len(mine)),
        read=read, read_rate=read_rate, median_seconds_to_read=to_read,
    )


# --- acknowledgements --------------------------------------------------------------


def acknowledgements(
    incident: Incident, script_msgs: Sequence[Delivery], acks: Sequence[Ack], contacts: Contacts
) -> Acknowledgements:
    current = incident.current_script
    version = current.version if current else None
    mine = [d for d in script_msgs if d.key.version == version]
    scope = sorted({d.key.person_id for d in mine})
    reached_at: dict[str, datetime] = {}
    for d in mine:
        if d.status in REACHED:
            reached_at[d.key.person_id] = min(d.updated_at, reached_at.get(d.key.person_id, d.updated_at))
    acked_at: dict[str, datetime] = {}
    for a in acks:
        if a.version == version and a.person_id in scope:
            acked_at[a.person_id] = min(a.at, acked_at.get(a.person_id, a.at))
    # Per person: acked or not, and the time to ack when it can be measured.
    times: dict[str, float | None] = {
        p: max(0.0, (at - reached_at[p]).total_seconds()) if p in reached_at else None for p, at in acked_at.items()
    }

    def stats(people: Sequence[str]) -> AckStats:
        acked = [p for p in people if p in acked_at]
        timed = sorted(t for p in acked if (t := times[p]) is not None)
        return AckStats(in_scope=len(people), acked=len(acked), ack_rate=_ratio(len(acked), len(people)),
                        timed=len(timed), median_seconds=median(timed), p90_seconds=percentile(timed, 90))

    teams: dict[str, list[str]] = {}
    regions: dict[str, list[str]] = {}
    for p in scope:
        person = contacts.people.get(p)
        for team in person.teams if person else [UNKNOWN]:
            teams.setdefault(team, []).append(p)
        regions.setdefault(person.region if person else UNKNOWN, []).append(p)
    return Acknowledgements(
        version=version,
        overall=stats(scope),
        by_team=[GroupAcks(id=t, name=contacts.teams[t].name if t in contacts.teams else t, stats=stats(people))
                 for t, people in sorted(teams.items())],
        by_region=[GroupAcks(id=r, name=contacts.regions[r].name if r in contacts.regions else r, stats=stats(people))
                   for r, people in sorted(regions.items())],
        never_acked=[_unacknowledged(p, contacts, p in reached_at) for p in scope if p not in acked_at],
    )


def _unacknowledged(person_id: str, contacts: Contacts, reached: bool) -> Unacknowledged:
    person = contacts.people.get(person_id)
    if person is None:
        return Unacknowledged(person_id=person_id, name=person_id, teams=[UNKNOWN], region=UNKNOWN, reached=reached)
    return Unacknowledged(person_id=person_id, name=person.name, teams=list(person.teams), region=person.region,
                          reached=reached)


# --- roles, escalations, chasing ---------------------------------------------------


def role_report(role: RoleAssignment, timeline: Sequence[TimelineEvent], contacts: Contacts) -> RoleReport:
    fired = [e for e in timeline if e.kind == "escalated" and e.data.get("role") == role.role]
    exhausted = any(e.kind == "alert" and e.data.get("role") == role.role for e in timeline)
    acker = contacts.people.get(role.acked_by) if role.acked_by else None
    return RoleReport(
        role=role.role, title=role.title, first_holder=role.chain[0] if role.chain else None, holder=role.holder,
        level=playbook_level(role), acked_by=role.acked_by, acked_by_name=acker.name if acker else role.acked_by,
        acked_at=role.acked_at, time_to_ack_seconds=_seconds(role.assigned_at, role.acked_at),
        escalations=len(fired), exhausted=exhausted, unfilled=role.unfilled,
    )


def escalations(timeline: Sequence[TimelineEvent]) -> list[Escalation]:
    """Every escalation that fired, in order (the `escalated` events)."""
    return [Escalation(at=e.at, role=str(e.data.get("role")), from_holder=e.data.get("from"),
                       to_holder=e.data.get("to"), level=int(e.data.get("level", 0)))
            for e in timeline if e.kind == "escalated"]


def chases(timeline: Sequence[TimelineEvent]) -> list[Chase]:
    out: list[Chase] = []
    for e in timeline:
        if e.kind == "audience_reminder" or e.kind == "audience_supervisor":
            kind: ChaseKind = "audience_reminder" if e.kind == "audience_reminder" else "audience_supervisor"
            out.append(Chase(at=e.at, kind=kind, version=e.data.get("version"),
                             waiting=len(e.data.get("not_acknowledged", [])), messages=e.data.get("messages")))
        elif e.kind == "remind_roles":
            out.append(Chase(at=e.at, kind="remind_roles", version=None,
                             waiting=len(e.data.get("unacknowledged", {})), messages=None))
    return out


def notices(deliveries: Sequence[Delivery]) -> list[NoticeCount]:
    """Messages that are not a version of the wording, by kind of notice."""
    counted: dict[Purpose, list[Delivery]] = {}
    for d in deliveries:
        purpose = d.key.notice
        if purpose is not None:
            counted.setdefault(purpose, []).append(d)
    order: tuple[Purpose, ...] = ("role_assigned", "role_reminder", "role_escalation", "reminder", "supervisor")
    return [NoticeCount(purpose=p, messages=len(counted[p]), reached=sum(1 for d in counted[p] if d.status in REACHED))
            for p in order if p in counted]


def notice_purpose(channel: str) -> Purpose | None:
    """The kind of notice a delivery's channel ("<medium>[-<purpose>]") names."""
    return DeliveryKey(incident_id="", version=0, person_id="", channel=channel).notice


# --- recurrence --------------------------------------------------------------------


def recurrence_key(incident: Incident) -> str:
    """The stream key whose past surges count as the same trouble coming back."""
    key = incident.surge_key or f"{incident.category}/{incident.region}"
    return key.removeprefix(DRILL_PREFIX)


def recurrence(incident: Incident, opening: Surge | None, surges: Sequence[Surge]) -> Recurrence:
    key = recurrence_key(incident)
    since, until = incident.opened_at - RECURRENCE_WINDOW, incident.opened_at
    past = [
        s for s in surges
        if s.key == key and not s.drill and since <= s.detected_at < until
        and not (opening is not None and (s.onset, s.detected_at) == (opening.onset, opening.detected_at))
    ]
    past.sort(key=lambda s: s.detected_at)
    return Recurrence(key=key, since=since, until=until, count=len(past), surges=[
        PastSurge(onset=s.onset, detected_at=s.detected_at, observed=s.observed, expected=s.expected, ratio=s.ratio)
        for s in past])


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start is not None and end is not None else None


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


async def incident_report(store: Store, contacts: Contacts, incident_id: str, clock: Clock) -> IncidentReport:
    """The edge: read what `build_report` needs from the store and build the report as
    of now (raises IncidentNotFound). Drills build theirs the same way."""
    incident = await store.get_incident(incident_id)
    timeline = await store.timeline(incident_id)
    surges = await store.surges(key=recurrence_key(incident), since=incident.opened_at - RECURRENCE_WINDOW)
    return build_report(
        incident, timeline=timeline, deliveries=await store.deliveries(incident_id), acks=await store.acks(incident_id),
        contacts=contacts, surges=surges, now=clock.now(),
    )
