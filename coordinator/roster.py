"""Who is who at a given moment: on-call rotations, the do-not-contact list, and the
emergency roles of a playbook filled from contacts. Pure: data and `at` in, values out."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from .catalog import Contacts
from .models import RoleAssignment
from .schemas import Assignee, DoNotContact, Person, Playbook, Rotation

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


def is_blocked(person: Person, entries: tuple[DoNotContact, ...], today: date) -> bool:
    """On the do-not-contact list on `today` (by id, phone or email; `until` inclusive)."""
    for entry in entries:
        if entry.until is not None and today > entry.until:
            continue
        if (
            entry.person == person.id
            or (entry.phone is not None and entry.phone == person.phone)
            or (entry.email is not None and entry.email == person.email)
        ):
            return True
    return False


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
