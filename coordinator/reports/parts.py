"""The incident report's parts (pydantic, so the API shows their schema) and the two
figures the reports share: a median of what is present, a nearest-rank percentile."""

from __future__ import annotations

import math
import statistics
from datetime import datetime
from typing import Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict

from ..models import NoticeKind

ChaseKind = Literal["audience_reminder", "audience_supervisor", "remind_roles"]
Purpose = NoticeKind


class Part(BaseModel):
    """A piece of a report or of the statistics: frozen, and closed to unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Timeliness(Part):
    """The incident's clock. Every `*_seconds` is measured from `opened_at` except
    `to_detect_seconds` (onset → detected) and `to_open_seconds` (onset or trigger →
    opened)."""

    trigger: Literal["surge", "manual"]
    # The surge that opened the incident (not a later, larger one that attached).
    onset: datetime | None
    detected_at: datetime | None
    opened_at: datetime
    acknowledged_at: datetime | None  # the leader's (first role's) acknowledgement
    scripted_at: datetime | None  # the first version of the wording approved
    first_script_at: datetime | None  # the first message of the wording reached someone
    resolved_at: datetime | None
    # Detector delay: the surge's estimated onset → the moment the detector saw it. None
    # for a manual trigger (nothing was detected).
    to_detect_seconds: float | None
    # Onset → opened for a surge; for a manual trigger the trigger is the opening, so 0.
    to_open_seconds: float
    to_acknowledge_seconds: float | None
    to_approve_seconds: float | None
    # Opened → the earliest moment a message of any version of the official wording
    # reached someone (see the module docstring for "reached").
    to_first_script_seconds: float | None
    to_resolve_seconds: float | None


class ChannelDelivery(Part):
    """Messages of the official wording (every `script` version; status updates and the
    stand-down are not counted) on one channel, by their status now."""

    channel: str
    messages: int  # deliveries created
    recipients: int  # distinct people among them
    queued: int  # not yet handed to the provider (queued, or being sent)
    sent: int  # accepted by the provider, no receipt (email never has one)
    delivered: int  # the carrier's receipt (SMS)
    failed: int  # failed or undelivered, for good
    # sms: failed SMS that went out again by email; email: emails that were such a fallback.
    fell_back: int
    delivery_rate: float | None  # (sent + delivered + read) / messages; None without messages
    # Messengers (DingTalk): read receipts. Time to read: from the version's approval
    # (when it went out) to the moment its read receipt was seen.
    read: int = 0
    read_rate: float | None = None  # read / messages; None without messages or read state
    median_seconds_to_read: float | None = None


class PersonChannel(Part):
    """One person's message of the version on one channel, as it stands now."""

    medium: str
    status: str
    at: datetime  # when it last moved


class PersonChannels(Part):
    """The incident board's row for one person: each channel's message of the wording
    in force (sent / delivered / read) and the acknowledgement, with its channel."""

    person_id: str
    name: str
    channels: list[PersonChannel]
    acked_via: str | None
    acked_at: datetime | None


class AckStats(Part):
    """Acknowledgements of the wording in force among a set of people in scope."""

    in_scope: int  # people a message of the version was created for
    acked: int  # of them, those who acknowledged that version
    ack_rate: float | None  # acked / in_scope; None when no one is in scope
    # Those acked whose first message of the version had reached them (the base of the
    # times below); an ack before any recorded "reached" moment counts as 0 s.
    timed: int
    # Time to ack: from the moment their first message of the version reached them to
    # their acknowledgement. Median: the middle value (mean of the two middle ones);
    # p90: nearest rank, the smallest time within which at least 90% of them acked.
    median_seconds: float | None
    p90_seconds: float | None


class GroupAcks(Part):
    id: str  # team or region id
    name: str
    stats: AckStats


class Unacknowledged(Part):
    """Someone in scope who has not acknowledged the wording in force."""

    person_id: str
    name: str
    teams: list[str]
    region: str
    reached: bool  # False: no message of the version reached them (do not blame them)


class Acknowledgements(Part):
    """Measured against the audience of the latest approved version of the wording (the
    one the frontline must be saying now): an ack of a superseded version does not
    confirm the current one, and someone added to the audience later is in scope. A
    person in several teams counts in each. None/empty before any version is approved."""

    version: int | None
    overall: AckStats
    by_team: list[GroupAcks]
    by_region: list[GroupAcks]
    never_acked: list[Unacknowledged]


class Escalation(Part):
    at: datetime
    role: str
    from_holder: str | None
    to_holder: str | None
    level: int


class RoleReport(Part):
    role: str
    title: str
    first_holder: str | None  # chain[0], assigned at opening
    holder: str | None  # who holds it now (after escalations)
    level: int  # escalation level reached; 0: never escalated
    acked_by: str | None
    acked_by_name: str | None
    acked_at: datetime | None
    time_to_ack_seconds: float | None  # assigned → acknowledged, escalations included
    escalations: int  # escalations that fired for this role
    exhausted: bool  # no one in its whole chain acknowledged in time
    unfilled: bool  # no one could hold it at all


class Chase(Part):
    """One round of chasing on the timeline: a reminder to the frontline who had not
    acknowledged, a notice to their supervisors, or a reminder to role holders."""

    at: datetime
    kind: ChaseKind
    version: int | None
    waiting: int  # people (or roles) not acknowledged at that moment
    messages: int | None  # messages queued (not recorded for role reminders)


class NoticeCount(Part):
    """Chasing messages by purpose, counted from the deliveries."""

    purpose: Purpose
    messages: int
    reached: int


class PastSurge(Part):
    onset: datetime
    detected_at: datetime
    observed: int
    expected: float
    ratio: float


class Recurrence(Part):
    """Real surges on the incident's key detected in [opened − 30 days, opened), the
    incident's own opening surge excluded. Drill surges never count."""

    key: str
    since: datetime
    until: datetime
    count: int
    surges: list[PastSurge]


class IncidentReport(Part):
    incident_id: str
    title: str
    playbook: str
    category: str
    region: str
    severity: str
    status: str
    # Carried so that callers keep drills out of real-incident statistics.
    drill: bool
    opened_by: str
    generated_at: datetime  # the `now` the figures describe
    timeliness: Timeliness
    delivery: list[ChannelDelivery]
    acks: Acknowledgements
    roles: list[RoleReport]
    escalations: list[Escalation]
    chases: list[Chase]
    notices: list[NoticeCount]
    recurrence: Recurrence
    # Per person, the wording in force: each channel's status and the acknowledgement.
    people: list[PersonChannels] = []


def median(values: Iterable[float | None]) -> float | None:
    """The median of the figures present; None (a figure that does not apply) is skipped."""
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest rank: the smallest value with at least `pct`% of the values at or below
    it. Always one of the values, so "90% acked within X" holds as stated."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1])
