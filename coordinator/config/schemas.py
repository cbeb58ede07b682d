"""Schemas of the config files (playbooks/, contacts/, drills/, categories.yaml).

Each model checks what one file can check on its own; references between files are
checked by `catalog.py`. Formats are documented in docs/config.md."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from .durations import format_duration as format_duration, parse_duration as parse_duration


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("duration must be greater than zero")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)")
    return value


def _cron(value: str) -> str:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_positive),
    PlainSerializer(format_duration, return_type=str),
]
Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9]\d{6,14}$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
TimeZone = Annotated[str, AfterValidator(_timezone)]
Cron = Annotated[str, AfterValidator(_cron)]
Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
Severity = Literal["minor", "major", "critical"]
# The channels a person is reached on, in the order a playbook may try them.
ChannelName = Literal["sms", "email", "dingtalk", "wecom"]
# DingTalk and WeCom userids: letters, digits and "_-@." (WeCom: 1-64 bytes).
MessengerUserid = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_@.\-]{1,64}$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- contacts/ -------------------------------------------------------------------------


class Region(Strict):
    id: Id
    name: Text


class Team(Strict):
    id: Id
    name: Text
    # emergency: holds playbook roles; frontline: receives the official script.
    kind: Literal["emergency", "frontline"]


class Person(Strict):
    id: Id
    name: Text
    phone: Phone | None = None
    # Several phones, the main one first (then `phone` reads as it): docs/config.md, several phones.
    phones: list[Phone] | None = Field(default=None, min_length=1, max_length=5)
    email: Email | None = None
    region: Id
    teams: list[Id] = Field(min_length=1)
    position: str = ""
    # Told when this person does not acknowledge a script in time.
    supervisor: Id | None = None
    # Their userid in the organisation's DingTalk / WeCom (docs/messengers.md).
    dingtalk_userid: MessengerUserid | None = None
    wecom_userid: MessengerUserid | None = None

    @model_serializer(mode="wrap")
    def _phone_once(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)  # written back as given: `phones` (not the `phone` read from them), or `phone`
        return {k: v for k, v in out.items() if k != "phone"} if isinstance(out, dict) and self.phones else out

    @model_validator(mode="after")
    def _reachable(self) -> "Person":
        if self.phone is not None and self.phones is not None:
            raise ValueError(f"person {self.id} has both phone and phones: list every number under phones")
        if self.phones:
            object.__setattr__(self, "phone", self.phones[0])  # frozen, but made here: the main phone
        if not (self.numbers or self.email or self.dingtalk_userid or self.wecom_userid):
            raise ValueError(f"person {self.id} has no phone, email, dingtalk_userid or wecom_userid")
        return self

    @property
    def numbers(self) -> tuple[str, ...]:
        """Every phone of the person, the main one first (`phones`, or the one `phone`)."""
        return tuple(self.phones) if self.phones else (self.phone,) if self.phone else ()


class RotationOverride(Strict):
    start: datetime
    end: datetime
    person: Id

    @model_validator(mode="after")
    def _ordered(self) -> "RotationOverride":
        if self.end <= self.start:
            raise ValueError("override end must be after its start")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("override start and end need a UTC offset, e.g. 2026-12-01T09:00:00+08:00")
        return self


class Rotation(Strict):
    id: Id
    name: Text
    timezone: TimeZone = "Asia/Shanghai"
    period: Literal["daily", "weekly"] = "weekly"
    # Weekly shifts change on this day (ignored for daily rotations) at `handoff_time`.
    handoff_day: Weekday = "mon"
    handoff_time: time = time(9, 0)
    # The first listed member's shift starts at the first handoff on or after this date.
    start: date
    members: list[Id] = Field(min_length=1)
    overrides: list[RotationOverride] = []


class DoNotContact(Strict):
    person: Id | None = None
    phone: Phone | None = None
    email: Email | None = None
    reason: Text
    until: date | None = None
    # A person's entry closes these channels only (omitted: every channel).
    channels: list[ChannelName] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _names_someone(self) -> "DoNotContact":
        if not (self.person or self.phone or self.email):
            raise ValueError("a do-not-contact entry needs a person, phone or email")
        return self


# --- playbooks/ ------------------------------------------------------------------------


class Trigger(Strict):
    categories: list[Id] = Field(min_length=1)
    # Omitted: any region.
    regions: list[Id] | None = None
    min_count: int = Field(ge=1)
    min_ratio: float = Field(ge=1.0)


class SeverityRule(Strict):
    level: Severity
    ratio_at_least: float | None = None
    count_at_least: int | None = None
    regulator_at_least: int | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> "SeverityRule":
        if self.ratio_at_least is None and self.count_at_least is None and self.regulator_at_least is None:
            raise ValueError("a severity rule needs ratio_at_least, count_at_least or regulator_at_least")
        return self


class SeverityPolicy(Strict):
    default: Severity
    rules: list[SeverityRule] = []


class Assignee(Strict):
    """Who can hold a role: a team (optionally one position in it), a rotation, or a person."""

    team: Id | None = None
    position: str | None = None
    rotation: Id | None = None
    person: Id | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Assignee":
        given = [k for k in ("team", "rotation", "person") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("name exactly one of team, rotation or person")
        if self.position is not None and self.team is None:
            raise ValueError("position goes with team")
        return self


class Role(Strict):
    id: Id
    title: Text
    assign: Assignee
    ack_within: Duration
    # Backups, level by level: each is tried when the one before has not acknowledged
    # within `ack_within`.
    escalation: list[Assignee] = []


class ScriptTemplates(Strict):
    """Template files (paths under templates/) for one message, per channel."""

    sms: Text
    email_subject: Text
    email_text: Text
    email_html: Text


class Param(Strict):
    label: Text
    required: bool = True
    default: str | None = None
    example: str | None = None


class Script(Strict):
    approval: Literal["auto", "leader"]
    templates: ScriptTemplates
    update: ScriptTemplates
    # Parameters the templates use, given by the leader (or a drill) at trigger time.
    params: dict[Id, Param] = {}


class Audience(Strict):
    teams: list[Id] = Field(min_length=1)
    # `affected`: the regions of the surge (or the trigger's); `all`; or a list.
    regions: Literal["affected", "all"] | list[Id] = "affected"
    ack_within: Duration
    # Reminder to those who have not acknowledged, then their supervisor is told.
    remind_after: Duration | None = None
    supervisor_after: Duration | None = None
    # A person's channels (SMS, then email): all at once ("together"), or in turn: the
    # email only if the SMS has no delivery receipt within `next_channel_after` (or
    # failed, or the person has no SMS open). Or the channels themselves, in order
    # (`[dingtalk, sms, email]`): only these, all at once unless `order: in_turn`, where
    # the next is used if the one before is not read (a messenger) or delivered within
    # `next_channel_after` (docs/messengers.md).
    channels: Literal["together", "in_turn"] | list[ChannelName] = "together"
    order: Literal["together", "in_turn"] | None = None
    next_channel_after: Duration | None = None

    @property
    def channel_order(self) -> tuple[str, ...]:
        """The channels this audience is reached on, in order."""
        return tuple(self.channels) if isinstance(self.channels, list) else ("sms", "email", "dingtalk", "wecom")

    @property
    def in_turn(self) -> bool:
        return self.channels == "in_turn" or self.order == "in_turn"

    @model_validator(mode="after")
    def _in_turn_needs_a_wait(self) -> "Audience":
        if isinstance(self.channels, list):
            if not self.channels or len(set(self.channels)) != len(self.channels):
                raise ValueError("channels: name each channel once, e.g. [dingtalk, sms, email]")
            if (self.order == "in_turn") != (self.next_channel_after is not None):
                raise ValueError("order: in_turn goes with next_channel_after (how long a channel has to be read)")
            return self
        if self.order is not None:
            raise ValueError("order goes with a list of channels, e.g. channels: [dingtalk, sms]")
        if self.channels == "in_turn" and self.next_channel_after is None:
            raise ValueError("channels: in_turn needs next_channel_after (how long an SMS has to be delivered)")
        if self.channels == "together" and self.next_channel_after is not None:
            raise ValueError("next_channel_after applies to channels: in_turn only")
        return self


class Step(Strict):
    action: Literal["remind_roles", "remind_audience", "status_update"]
    at: Duration | None = None
    every: Duration | None = None

    @model_validator(mode="after")
    def _one_timing(self) -> "Step":
        if (self.at is None) == (self.every is None):
            raise ValueError("a step needs exactly one of at or every")
        return self


class StandDown(Strict):
    templates: ScriptTemplates


class FollowUp(Strict):
    after: Duration
    action: Literal["review", "report"]
    notify_roles: list[Id] = Field(min_length=1)


class Playbook(Strict):
    id: Id
    title: Text
    description: str = ""
    trigger: Trigger
    severity: SeverityPolicy
    roles: list[Role] = Field(min_length=1)
    script: Script
    audience: Audience
    steps: list[Step] = []
    stand_down: StandDown
    follow_up: FollowUp


# --- drills/ ---------------------------------------------------------------------------


class SurgeScenario(Strict):
    """A synthetic complaint surge fed through intake, so detection is exercised too."""

    kind: Literal["surge"]
    playbook: Id
    category: Id
    region: Id
    shape: Literal["step", "ramp"] = "step"
    multiplier: float = Field(gt=1.0)
    duration: Duration
    params: dict[Id, str] = {}


class TriggerScenario(Strict):
    """A direct trigger of a playbook, as a leader would do by hand."""

    kind: Literal["trigger"]
    playbook: Id
    region: Id
    params: dict[Id, str] = {}


class DrillAudience(Strict):
    teams: list[Id] | None = None
    regions: list[Id] | None = None


class DrillSuccess(Strict):
    ack_within: Duration
    min_ack_rate: float = Field(default=0.9, ge=0.0, le=1.0)


class Drill(Strict):
    id: Id
    title: Text
    schedule: Cron
    timezone: TimeZone = "Asia/Shanghai"
    scenario: Annotated[Union[SurgeScenario, TriggerScenario], Field(discriminator="kind")]
    # Narrower than the playbook's audience, or omitted for the playbook's own.
    audience: DrillAudience | None = None
    channels: Literal["sandbox", "real"] = "sandbox"
    success: DrillSuccess
    max_duration: Duration = timedelta(hours=1)


# --- categories.yaml -------------------------------------------------------------------


class Category(Strict):
    id: Id
    name: Text | None = None  # required for a category that is not built in
    # Complaints an hour across all regions, as the deployment usually sees them: where
    # a stream of the category with no history of its own starts (detection/prior.py).
    typical_per_hour: float | None = Field(default=None, gt=0)
    # Its usual day: 24 figures, one an hour from 00:00 local time, relative to each other
    # (any scale): the prior's time of day (else detection/prior.py's DEFAULT_DAY).
    typical_day: list[Annotated[float, Field(gt=0)]] | None = Field(default=None, min_length=24, max_length=24)


class CategoriesFile(Strict):
    categories: list[Category] = []
