"""Typed records that flow through the service and the store."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import InvalidAction
from .config.schemas import Playbook


class Channel(StrEnum):
    """Where a complaint came in."""

    hotline = "hotline"
    app = "app"
    web = "web"
    shop = "shop"
    social = "social"
    regulator = "regulator"


ALL_REGIONS = "*"
# Streams and surge keys of drills carry this prefix: a drill never counts into, opens,
# or suppresses anything real.
DRILL_PREFIX = "drill:"


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Complaint(Record):
    id: str
    received_at: datetime
    channel: Channel
    category: str
    region: str
    subscriber_hash: str | None = None
    text: str = ""
    ingested_at: datetime
    # A drill's synthetic complaint: counted into the drill's own streams only.
    drill: bool = False

    def streams(self) -> tuple[str, str]:
        """The two streams a complaint counts into: its category x region, and category-wide."""
        prefix = DRILL_PREFIX if self.drill else ""
        return prefix + stream_key(self.category, self.region), prefix + stream_key(self.category, ALL_REGIONS)


def stream_key(category: str, region: str) -> str:
    return f"{category}/{region}"


def bucket_start(when: datetime, bucket_seconds: int) -> int:
    """Epoch seconds of the start of the bucket holding `when`."""
    ts = int(when.timestamp())
    return ts - ts % bucket_seconds


def utc(ts: int | float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class IncidentStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    scripted = "scripted"
    resolved = "resolved"
    closed = "closed"


OPEN_STATUSES = frozenset(
    {IncidentStatus.open, IncidentStatus.acknowledged, IncidentStatus.scripted}
)


class Surge(Record):
    """A detector's alarm on one stream: what the incident side consumes."""

    key: str  # the stream, "category/region" or "category/*" ("drill:..." in a drill)
    category: str
    region: str
    onset: datetime
    detected_at: datetime
    observed: int
    expected: float
    ratio: float
    score: float
    regulator: int = 0  # complaints from the regulator channel in the surge
    samples: list[str] = Field(default_factory=list)  # a few complaint ids
    drill: bool = False


class RoleAssignment(Record):
    """One emergency role on an incident: its escalation chain resolved at opening, who
    holds it now (level), and whether they have acknowledged."""

    role: str
    title: str
    # chain[0] is the first holder; each next entry is the backup one level up.
    chain: list[str] = Field(default_factory=list)
    level: int = 0
    ack_within_seconds: int
    assigned_at: datetime
    deadline: datetime | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    # Levels with no one (on leave, no member): alerts on the incident.
    gaps: list[str] = Field(default_factory=list)
    # The playbook's level of each chain entry (0: `assign`, n: escalation n); [] before.
    levels: list[int] = Field(default_factory=list)

    @property
    def holder(self) -> str | None:
        return self.chain[self.level] if self.level < len(self.chain) else None

    @property
    def unfilled(self) -> bool:
        return not self.chain


class ScriptKind(StrEnum):
    script = "script"  # the official wording, version 1, 2, ...
    update = "update"  # a status update under the current wording
    stand_down = "stand_down"  # the incident is over: the wording is withdrawn


class ScriptVersion(Record):
    """One version of the official script: the exact texts every recipient gets, the
    hash that proves it, and who wrote and approved it."""

    version: int
    kind: ScriptKind = ScriptKind.script
    sms: str
    email_subject: str
    email_text: str
    email_html: str
    content_hash: str
    sms_encoding: str
    sms_segments: int
    params: dict[str, str] = Field(default_factory=dict)
    # Parameters still to be filled in by the leader (a surge-opened incident starts
    # without them): such a version is never sent before approval.
    missing: list[str] = Field(default_factory=list)
    supersedes: int | None = None
    author: str
    created_at: datetime
    approved_by: str | None = None
    approved_at: datetime | None = None

    @property
    def approved(self) -> bool:
        return self.approved_at is not None


class Incident(Record):
    id: str
    playbook: str
    title: str
    status: IncidentStatus = IncidentStatus.open
    severity: str
    category: str = ""
    region: str = ""
    # Incidents opened by a surge carry its key; one open incident per key at a time.
    surge_key: str | None = None
    # Short, unique among open incidents (replies.py): every SMS carries it, and a reply
    # "1 K7Q" names the incident it acknowledges. Empty on incidents from before codes.
    code: str = ""
    drill: bool = False
    # The drill run that started it, and the drill's narrower audience (None: the playbook's).
    drill_run: str | None = None
    audience_teams: list[str] | None = None
    audience_regions: list[str] | None = None
    opened_at: datetime
    opened_by: str
    params: dict[str, Any] = Field(default_factory=dict)
    # The playbook as it was at opening: later file edits do not touch a running incident.
    playbook_snapshot: Playbook | None = None

    @field_validator("playbook_snapshot", mode="before")
    @classmethod
    def _no_snapshot(cls, value: Any) -> Any:
        return value or None  # an incident stored before snapshots were typed has {}

    @property
    def plan(self) -> Playbook:
        """The snapshot of the playbook; an incident without one cannot be worked on."""
        if self.playbook_snapshot is None:
            raise InvalidAction(f"incident {self.id} has no playbook snapshot")
        return self.playbook_snapshot

    roles: list[RoleAssignment] = Field(default_factory=list)
    scripts: list[ScriptVersion] = Field(default_factory=list)
    surge: Surge | None = None
    surge_count: int = 0  # surges attached, the first included
    alerts: list[str] = Field(default_factory=list)
    acknowledged_at: datetime | None = None
    scripted_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    updated_at: datetime
    # Bumped on every save; a save based on a stale copy is refused (store.Conflict).
    revision: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def role(self, role_id: str) -> RoleAssignment | None:
        return next((r for r in self.roles if r.role == role_id), None)

    def script(self, version: int) -> ScriptVersion | None:
        return next((v for v in self.scripts if v.version == version), None)

    @property
    def current_script(self) -> ScriptVersion | None:
        """The latest approved version of the wording (updates and stand-down excluded)."""
        approved = [v for v in self.scripts if v.approved and v.kind == ScriptKind.script]
        return approved[-1] if approved else None


class TimelineEvent(Record):
    at: datetime
    kind: str
    actor: str = "system"
    data: dict[str, Any] = Field(default_factory=dict)


class DeliveryStatus(StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"
    delivered = "delivered"
    undelivered = "undelivered"
    failed = "failed"
    read = "read"  # a messenger's read receipt (DingTalk): past delivered


# A status only moves forward: a late or repeated provider callback never undoes a later one.
DELIVERY_RANK: dict[DeliveryStatus, int] = {
    DeliveryStatus.queued: 0,
    DeliveryStatus.sending: 1,
    DeliveryStatus.sent: 2,
    DeliveryStatus.delivered: 3,
    DeliveryStatus.undelivered: 3,
    DeliveryStatus.failed: 3,
    DeliveryStatus.read: 4,
}


# What one message is (its key and medium): delivery_keys.py, re-exported here.
from .delivery_keys import DeliveryKey as DeliveryKey, Medium as Medium, NoticeKind as NoticeKind  # noqa: E402


class Delivery(Record):
    key: DeliveryKey
    status: DeliveryStatus = DeliveryStatus.queued
    address: str
    content_hash: str
    provider_id: str | None = None
    error: str | None = None
    attempts: int = 0
    # Set when an SMS failed for good and the email went out instead.
    fell_back: bool = False
    # The body of a message that is not a script version (a reminder, a notice to a
    # supervisor); None: the version's text for the channel.
    text: str | None = None
    # The email subject of such a message; None: the version's subject.
    subject: str | None = None
    updated_at: datetime
    # When a worker first claimed it, as the store recorded it (filled in by
    # `claim_deliveries`, not kept in the document): a later claim means an earlier
    # worker may have sent it and died before recording that.
    claimed_at: datetime | None = Field(default=None, exclude=True)


class Ack(Record):
    incident_id: str
    person_id: str
    # The script version acknowledged; None for a role acknowledgement.
    version: int | None = None
    role: str | None = None
    via: str
    at: datetime


class DrillRunStatus(StrEnum):
    running = "running"
    finished = "finished"
    missed = "missed"  # its time passed while no instance was up to run it
    failed = "failed"  # it could not start (say, sandbox channels asked of a real service)


class DrillRun(Record):
    """One run of a drill: scheduled, caught up after a restart, or started by hand. The
    report is computed from the store whenever asked, so it is never stale."""

    id: str
    drill_id: str
    title: str
    how: str  # "schedule" | "catch-up" | "manual"
    by: str = "scheduler"  # who started a manual run
    scheduled_for: datetime | None = None
    started_at: datetime
    status: DrillRunStatus = DrillRunStatus.running
    channels: str = "sandbox"
    incident_id: str | None = None
    fed: int = 0  # synthetic complaints fed so far (surge scenarios)
    # Surge scenarios: the real stream's usual complaints per bucket when the run started;
    # fixed for the run, so its synthetic complaints are the same whoever computes them.
    base_rate: float | None = None
    detected: bool | None = None  # None until known; False: the playbook was triggered directly
    notes: list[str] = Field(default_factory=list)
    ended_at: datetime | None = None
    end_reason: str | None = None  # "all acknowledged" | "time is up" | why it failed
    revision: int = 0
