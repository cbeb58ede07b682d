"""Who is who at a given moment: on-call rotations, the do-not-contact list, and the
emergency roles of a playbook filled from contacts. Pure: data and `at` in, values out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .config.catalog import Contacts
from .models import ALL_REGIONS, RoleAssignment
from .config.schemas import Assignee, DoNotContact, Person, Playbook, Rotation

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def first_handoff(rotation: Rotation) -> datetime:
    """The local (naive) time the first listed member's first shift starts."""
    day = rotation.start
    if rotation.period == "weekly":
        ahead = (_WEEKDAYS.index(rotation.handoff_day) - day.weekday()) % 7
        day = day + timedelta(days=ahead)
    return datetime.combine(day, rotation.handoff_time)


def on_call(rotation: Rotation, at: datetime) -> str:
    """The person holding `rotation` at `at`: an override covering `at` wins; otherwise
    members take turns, changing at the handoff in the rotation's own time zone (before
    the first handoff, the last member is still on)."""
    for override in rotation.overrides:
        if override.start <= at < override.end:
            return override.person
    local = at.astimezone(ZoneInfo(rotation.timezone)).replace(tzinfo=None)
    shift = timedelta(days=7 if rotation.period == "weekly" else 1)
    turns = (local - first_handoff(rotation)) // shift
    return rotation.members[turns % len(rotation.members)]


def blocked_channels(person: Person, entries: tuple[DoNotContact, ...], today: date) -> set[str]:
    """The channels the do-not-contact list closes for `person` on `today` (`until`
    inclusive): an entry for the person closes its `channels` (omitted: every one), one
    for an address closes email, and SMS is closed when entries close every phone of
    theirs (`open_phones`: a number's entry closes that number)."""
    closed: set[str] = set()
    for entry in entries:
        if entry.until is not None and today > entry.until:
            continue
        if entry.person == person.id:
            closed |= set(entry.channels or CHANNELS)
        if entry.email is not None and entry.email == person.email:
            closed.add("email")
    if person.numbers and not open_phones(person, entries, today):
        closed.add("sms")
    return closed


def open_phones(person: Person, entries: tuple[DoNotContact, ...], today: date) -> list[str]:
    """The person's phones an SMS may go to today, the main one first: a phone number's
    entry closes that number only (a person's entry with SMS among its channels, all)."""
    closed: set[str] = set()
    for entry in entries:
        if entry.until is not None and today > entry.until:
            continue
        if entry.person == person.id and (entry.channels is None or "sms" in entry.channels):
            return []
        if entry.phone is not None:
            closed.add(entry.phone)
    return [n for n in person.numbers if n not in closed]


def reach(person: Person, medium: str, entries: tuple[DoNotContact, ...], today: date,
          stopped: frozenset[str] | set[str] = frozenset()) -> tuple[str, int] | None:
    """Where a message to `person` on `medium` goes today, if that medium is open to them:
    the address and, for SMS, which of their phones it is (`DeliveryKey.phone`): the
    first open one that has not replied STOP (`stopped`), the main one as a rule."""
    return place_on(person, medium, entries, today, stopped) if medium in channels_of(person, entries, today) else None


def place_on(person: Person, medium: str, entries: tuple[DoNotContact, ...], today: date,
             stopped: frozenset[str] | set[str] = frozenset()) -> tuple[str, int] | None:
    """`reach` for a medium already known open to the person (`channels_of`)."""
    if medium != "sms":
        return address_of(person, medium), 0
    usable = [n for n in open_phones(person, entries, today) if n not in stopped]
    return (usable[0], person.numbers.index(usable[0])) if usable else None


def channels_of(person: Person, entries: tuple[DoNotContact, ...], today: date) -> list[str]:
    """The channels `person` can be reached on today: those they have, less those closed."""
    closed = blocked_channels(person, entries, today)
    return [c for c in CHANNELS if _address(person, c) and c not in closed]


# Every channel a person may have, in the order a playbook's legacy `channels` tries them.
CHANNELS = ("sms", "email", "dingtalk", "wecom")


def _address(person: Person, medium: str) -> str | None:
    return {"sms": person.numbers[0] if person.numbers else None, "email": person.email, "dingtalk": person.dingtalk_userid,
            "wecom": person.wecom_userid}.get(medium)


def address_of(person: Person, medium: str) -> str:
    """The person's phone for "sms", address for "email", userid for "dingtalk" and
    "wecom" (a channel they have)."""
    address = _address(person, medium)
    if address is None:
        raise ValueError(f"person {person.id} has no {medium} address")
    return address


def is_blocked(person: Person, entries: tuple[DoNotContact, ...], today: date) -> bool:
    """No channel left to reach `person` today."""
    return not channels_of(person, entries, today)


@dataclass(frozen=True)
class Recipient:
    person: Person
    channels: tuple[str, ...]


def audience(
    playbook: Playbook,
    contacts: Contacts,
    region: str,
    today: date,
    *,
    teams: list[str] | None = None,
    regions: list[str] | None = None,
) -> tuple[list[Recipient], list[str]]:
    """The frontline staff in scope of `playbook` for an incident in `region` (`*`: all),
    optionally narrowed (a drill's audience). Returns the recipients, each with the
    channels that reach them, and the ids of those left out by the do-not-contact list."""
    recipients: list[Recipient] = []
    left_out: list[str] = []
    for recipient in in_scope(playbook, contacts, region, today, teams=teams, regions=regions):
        if recipient.channels:
            recipients.append(recipient)
        else:
            left_out.append(recipient.person.id)
    return recipients, left_out


def in_scope(
    playbook: Playbook,
    contacts: Contacts,
    region: str,
    today: date,
    *,
    teams: list[str] | None = None,
    regions: list[str] | None = None,
) -> Iterator[Recipient]:
    """`audience` one person at a time, in id order, those the do-not-contact list leaves
    out with no channels: a publish to thousands writes its first deliveries before the
    last person is looked at."""
    scope = playbook.audience
    wanted_teams = set(teams if teams is not None else scope.teams)
    if regions is not None:
        wanted_regions: set[str] | None = set(regions)
    elif scope.regions == "all" or (scope.regions == "affected" and region == ALL_REGIONS):
        wanted_regions = None
    elif scope.regions == "affected":
        wanted_regions = {region}
    else:
        wanted_regions = set(scope.regions)
    for person in sorted(contacts.people.values(), key=lambda p: p.id):
        if wanted_teams.isdisjoint(person.teams):
            continue
        if wanted_regions is not None and person.region not in wanted_regions:
            continue
        yield Recipient(person, tuple(channels_of(person, contacts.do_not_contact, today)))


def candidates(who: Assignee, contacts: Contacts, at: datetime) -> list[str]:
    """People who can fill one level of a role, in order of preference."""
    if who.person is not None:
        return [who.person]
    if who.rotation is not None:
        return [on_call(contacts.rotations[who.rotation], at)]
    assert who.team is not None
    return sorted(p.id for p in contacts.members(who.team, who.position))


def assign_roles(
    playbook: Playbook, contacts: Contacts, at: datetime, tz: ZoneInfo = ZoneInfo("Asia/Shanghai")
) -> list[RoleAssignment]:
    """Fill every role of `playbook` at `at`. At each level the first candidate who is
    not on the do-not-contact list and not already in the chain is taken; a level with
    no one is noted in `gaps`, and a role with no one at all is `unfilled`, an alert on
    the incident rather than an error."""
    out: list[RoleAssignment] = []
    today = at.astimezone(tz).date()
    for role in playbook.roles:
        chain: list[str] = []
        levels: list[int] = []
        gaps: list[str] = []
        for level, who in enumerate([role.assign, *role.escalation]):
            pick = next(
                (
                    pid
                    for pid in candidates(who, contacts, at)
                    if pid in contacts.people
                    and pid not in chain
                    and not is_blocked(contacts.people[pid], contacts.do_not_contact, today)
                ),
                None,
            )
            if pick is None:
                gaps.append(f"level {level}: no one available ({_describe(who)})")
            else:
                chain.append(pick)
                levels.append(level)
        ack = role.ack_within
        out.append(
            RoleAssignment(
                role=role.id,
                title=role.title,
                chain=chain,
                ack_within_seconds=int(ack.total_seconds()),
                assigned_at=at,
                deadline=at + ack if chain else None,
                gaps=gaps,
                levels=levels,
            )
        )
    return out


def playbook_level(role: RoleAssignment, index: int | None = None) -> int:
    """The playbook's level of the role's chain entry `index` (default: the holder's):
    0 is `assign`, n the n-th entry of `escalation`. A level no one could fill has no
    entry, so the chain's second entry may be level 2; the page, the timeline and the
    alerts all number levels this way. (Incidents from before `levels`: the index.)"""
    at = role.level if index is None else index
    return role.levels[at] if at < len(role.levels) else at


@dataclass(frozen=True)
class RoleAlert:
    """An alert about a role when the incident opens: a level of its escalation no one
    can fill (`level`), or the role with no one at all (`level` None). `message` is the
    English line kept on the incident; `data` goes on the timeline for the console."""

    role: str
    title: str
    level: int | None
    assignee: dict[str, str]  # the playbook's entry: {"team", "position"}, {"rotation"} or {"person"}

    @property
    def message(self) -> str:
        if self.level is None:
            return f"role {self.role} ({self.title}) has no one to hold it"
        return f"role {self.role} ({self.title}): level {self.level}: no one available ({_describe_entry(self.assignee)})"

    def data(self) -> dict[str, Any]:
        # No "role" key: an alert event with one means the role's chain is exhausted (reports).
        return {"message": self.message, "code": "unfilled" if self.level is None else "level_gap",
                "about": self.role, "level": self.level, "assignee": self.assignee}


def role_alerts(playbook: Playbook, roles: list[RoleAssignment]) -> list[RoleAlert]:
    """The alerts an incident opens with: every level no one can fill, then every role
    with no one at all, numbered as `playbook_level` numbers them."""
    entries = {r.id: [r.assign, *r.escalation] for r in playbook.roles}
    out: list[RoleAlert] = []
    for r in roles:
        filled = set(r.levels) if r.levels or not r.chain else set(range(len(r.chain)))
        for level, who in enumerate(entries.get(r.role, [])):
            if level not in filled:
                out.append(RoleAlert(r.role, r.title, level, who.model_dump(exclude_none=True, exclude_defaults=True)))
    out += [RoleAlert(r.role, r.title, None, {}) for r in roles if r.unfilled]
    return out


def _describe(who: Assignee) -> str:
    return _describe_entry(who.model_dump(exclude_none=True, exclude_defaults=True))


def _describe_entry(who: dict[str, str]) -> str:
    if who.get("team"):
        return f"team {who['team']}" + (f", position {who['position']}" if who.get("position") else "")
    return f"rotation {who['rotation']}" if who.get("rotation") else f"person {who.get('person')}"


def media_needed(playbook: Playbook, contacts: Contacts) -> set[str]:
    """The media ("sms", "email", "dingtalk", "wecom") a playbook's messages go out on:
    those its audience (in any region) and the people its roles may fall to have an
    address for, within the audience's channels."""
    people = [p for team in playbook.audience.teams for p in contacts.members(team)]
    for role in playbook.roles:
        for who in (role.assign, *role.escalation):
            if who.team is not None:
                people += contacts.members(who.team, who.position)
            elif who.rotation is not None and who.rotation in contacts.rotations:
                people += [contacts.people[m] for m in contacts.rotations[who.rotation].members if m in contacts.people]
            elif who.person is not None and who.person in contacts.people:
                people.append(contacts.people[who.person])
    wanted = set(playbook.audience.channel_order) | {"sms", "email"}  # notices to roles go by SMS or email
    return {medium for p in people for medium in CHANNELS if _address(p, medium) and medium in wanted}


def missing_media(playbooks: Iterator[Playbook] | list[Playbook], contacts: Contacts, have: set[str]) -> dict[str, list[str]]:
    """Per playbook, the media it needs that no channel is configured for."""
    out: dict[str, list[str]] = {}
    for playbook in playbooks:
        missing = sorted(media_needed(playbook, contacts) - have)
        if missing:
            out[playbook.id] = missing
    return out


def unused_userids(contacts: Contacts, configured: set[str]) -> list[str]:
    """Warnings for messenger userids in the contacts whose messenger is not configured
    (`configured`: "dingtalk", "wecom"): those people are not reached there."""
    out = []
    for medium, env in (("dingtalk", "COORDINATOR_DINGTALK_APP_KEY"), ("wecom", "COORDINATOR_WECOM_CORP_ID")):
        holders = sorted(p.id for p in contacts.people.values() if _address(p, medium))
        if holders and medium not in configured:
            out.append(f"warning: {len(holders)} people have a {medium}_userid ({', '.join(holders[:3])}"
                       f"{', ...' if len(holders) > 3 else ''}) but {env} is not set: {medium} does not reach them")
    return out
