"""What needs the leader now, at the top of the incident page and of the overview:
versions of the wording waiting for approval, roles no one holds or not acknowledged in
time, the people who have not acknowledged the wording in force, the open alerts. And
the delivery board per version: the numbers under "送达与确认 · v2" count v2 only.

Pure: the incident, its deliveries and acks, and `now` in; values out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

from ...models import Ack, Delivery, Incident, RoleAssignment, ScriptKind, ScriptVersion
from ...reports.incident import channel_delivery, script_channels
from ...reports.parts import ChannelDelivery


@dataclass(frozen=True)
class Attention:
    incident: Incident
    pending: list[ScriptVersion]  # the newest version approvable now (nothing missing), if any
    lacking: list[ScriptVersion]  # the newest waiting with parameters missing: a new version is needed
    unfilled: list[RoleAssignment]
    overdue: list[RoleAssignment]
    version: int | None  # the wording in force
    waiting: int  # people it went to who have not acknowledged it
    alerts: list[str] = field(default_factory=list)  # in words (incident_text.open_alerts)

    @property
    def empty(self) -> bool:
        return not (self.pending or self.lacking or self.unfilled or self.overdue or self.waiting or self.alerts)


def waiting_for_approval(incident: Incident) -> list[ScriptVersion]:
    """Versions of the wording newer than the one in force and not approved, oldest first."""
    current = incident.current_script
    return [v for v in incident.scripts if v.kind == ScriptKind.script and not v.approved
            and (current is None or v.version > current.version)]


def not_acknowledged(incident: Incident, deliveries: Sequence[Delivery], acks: Sequence[Ack]) -> int:
    """People the wording in force went to who have not acknowledged it."""
    current = incident.current_script
    if current is None:
        return 0
    reached = {d.key.person_id for d in deliveries if d.key.is_script and d.key.version == current.version}
    acked = {a.person_id for a in acks if a.version == current.version}
    return len(reached - acked)


def attention(incident: Incident, waiting: int, now: datetime, alerts: list[str]) -> Attention:
    """What needs the leader on `incident` at `now` (nothing once it is resolved);
    `waiting`: those who have not acknowledged the wording in force (not_acknowledged,
    or the store's count, Store.unacknowledged, where the deliveries are not at hand)."""
    if not incident.is_open:
        return Attention(incident, [], [], [], [], None, 0, [])
    pending = waiting_for_approval(incident)
    current = incident.current_script
    return Attention(
        incident=incident,
        pending=[v for v in pending if not v.missing][-1:],  # the newest: an older draft is superseded
        lacking=[v for v in pending if v.missing][-1:],
        unfilled=[r for r in incident.roles if r.unfilled],
        overdue=[r for r in incident.roles
                 if not r.unfilled and r.acked_at is None and r.deadline is not None and r.deadline < now],
        version=current.version if current else None,
        waiting=waiting if current else 0,
        alerts=alerts,
    )


@dataclass(frozen=True)
class VersionBoard:
    version: int
    people: int  # recipients of the version
    acked: int
    channels: list[ChannelDelivery]


def version_boards(incident: Incident, deliveries: Sequence[Delivery], acks: Sequence[Ack]) -> list[VersionBoard]:
    """Delivery per channel and acknowledgements of each version of the wording that went
    out, newest first: each version counted on its own."""
    out: list[VersionBoard] = []
    for v in reversed(incident.scripts):
        if v.kind != ScriptKind.script:
            continue
        mine = [d for d in deliveries if d.key.is_script and d.key.version == v.version]
        if not mine:
            continue
        people = {d.key.person_id for d in mine}
        acked = {a.person_id for a in acks if a.version == v.version and a.person_id in people}
        out.append(VersionBoard(v.version, len(people), len(acked),
                                [channel_delivery(c, mine) for c in script_channels(mine)]))
    return out
