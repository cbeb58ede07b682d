"""Who is who at a given moment: on-call rotations, the do-not-contact list, and the
emergency roles of a playbook filled from contacts. Pure: data and `at` in, values out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
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
    inclusive): an entry for the person closes both, one for a phone number closes
    SMS, one for an address closes email."""
    closed: set[str] = set()
    for entry in entries:
        if entry.until is not None and today > entry.until:
            continue
        if entry.person == person.id:
            closed |= {"sms", "email"}
        if entry.phone is not None and entry.phone == person.phone:
            closed.add("sms")
        if entry.email is not None and entry.email == person.email:
            closed.add("email")
    return closed


def channels_of(person: Person, entries: tuple[DoNotContact, ...], today: date) -> list[str]:
    """The channels `person` can be reached on today: those they have, less those closed."""
    closed = blocked_channels(person, entries, today)
    have = [c for c, address in (("sms", person.phone), ("email", person.email)) if address]
    return [c for c in have if c not in closed]


def address_of(person: Person, medium: str) -> str:
    """The person's phone for "sms", address for "email" (a channel they have)."""
    address = person.phone if medium == "sms" else person.email
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
            )
        )
    return out


def _describe(who: Assignee) -> str:
    if who.team is not None:
        return f"team {who.team}" + (f", position {who.position}" if who.position else "")
    return f"rotation {who.rotation}" if who.rotation is not None else f"person {who.person}"


def media_needed(playbook: Playbook, contacts: Contacts) -> set[str]:
    """The media ("sms", "email") a playbook's messages go out on: those its audience
    (in any region) and the people its roles may fall to have an address for."""
    people = [p for team in playbook.audience.teams for p in contacts.members(team)]
    for role in playbook.roles:
        for who in (role.assign, *role.escalation):
            if who.team is not None:
                people += contacts.members(who.team, who.position)
            elif who.rotation is not None and who.rotation in contacts.rotations:
                people += [contacts.people[m] for m in contacts.rotations[who.rotation].members if m in contacts.people]
            elif who.person is not None and who.person in contacts.people:
                people.append(contacts.people[who.person])
    return {medium for p in people for medium, address in (("sms", p.phone), ("email", p.email)) if address}


def missing_media(playbooks: Iterator[Playbook] | list[Playbook], contacts: Contacts, have: set[str]) -> dict[str, list[str]]:
    """Per playbook, the media it needs that no channel is configured for."""
    out: dict[str, list[str]] = {}
    for playbook in playbooks:
        missing = sorted(media_needed(playbook, contacts) - have)
        if missing:
            out[playbook.id] = missing
    return out
