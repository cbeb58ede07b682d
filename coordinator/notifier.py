"""The notices beside the script: role holders told what they hold, reminders to those
who have not acknowledged the wording, their supervisors told who. Each is its own
delivery (its purpose in the key), sent once, on the first channel still open to the
person; the texts come from notices.py."""

from __future__ import annotations

from typing import Callable
from zoneinfo import ZoneInfo

from .config.catalog import Catalog
from .clock import Clock
from .errors import InvalidAction
from .models import Delivery, DeliveryKey, Incident, TimelineEvent
from .notices import Notice, place, reminder, role_notice, supervisor_notice
from .outbox import Wake
from .roster import address_of, channels_of
from .store import Store


class Notifier:
    def __init__(self, *, store: Store, catalog: Callable[[], Catalog], clock: Clock, wake: Wake,
                 tz: ZoneInfo) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.wake = wake.set
        self.tz = tz

    async def notify_roles(self, incident: Incident, roles: list[str] | None, purpose: str) -> int:
        """Tell each holder of `roles` (all if None) that isn't acknowledged yet what they
        hold and by when to acknowledge. One message per (role, purpose)."""
        queued = 0
        for role in incident.roles:
            if (roles is not None and role.role not in roles) or role.holder is None or role.acked_at is not None:
                continue
            deadline = role.deadline.astimezone(self.tz).strftime("%H:%M") if role.deadline else "尽快"
            notice = role_notice(incident, role.title, purpose, place(self.catalog().contacts, incident), deadline)
            queued += await self._notice(incident.id, 0, role.holder, f"role-{role.role}-{purpose}", notice)
        self.wake()
        return queued

    async def _notice(self, incident_id: str, version: int, person_id: str, purpose: str, notice: Notice) -> int:
        """Queue a one-off message (not a script version) to a person on the first
        channel still open to them, keyed by `purpose` so it is sent once; 1 if queued."""
        contacts = self.catalog().contacts
        person = contacts.people.get(person_id)
        now = self.clock.now()
        reach = channels_of(person, contacts.do_not_contact, now.astimezone(self.tz).date()) if person else []
        if person is None or not reach:
            return 0
        medium = reach[0]
        delivery = Delivery(key=DeliveryKey(incident_id=incident_id, version=version, person_id=person_id,
                                            medium=medium, purpose=purpose),
                            address=address_of(person, medium), content_hash="", text=notice.text,
                            subject=notice.subject, updated_at=now)
        return int(await self.store.add_delivery(delivery))

    async def remind_now(self, incident_id: str, by: str) -> tuple[int, int]:
        """A leader's "remind now": everyone the wording in force reached who has not
        acknowledged it, a reminder of its own (its own delivery key) on top of the
        playbook's timed ones, with who asked on the timeline. Returns the version and
        the messages queued."""
        incident = await self.store.get_incident(incident_id)
        current = incident.current_script
        if not incident.is_open or current is None:
            reason = f"incident {incident.id} is {incident.status.value}" if not incident.is_open else "no approved wording yet"
            raise InvalidAction(f"nothing to remind of: {reason}")
        now = self.clock.now()
        await self.store.append_timeline(incident.id, TimelineEvent(
            at=now, kind="remind_requested", actor=by, data={"version": current.version}))
        queued = await self.chase(incident.id, current.version, supervisors=False,
                                  purpose=f"reminder-manual{now.timestamp():.0f}")
        return current.version, queued

    async def chase(self, incident_id: str, version: int, *, supervisors: bool, purpose: str | None = None) -> int:
        """Those who got `version` and have not acknowledged it: a reminder to each, or
        (the next level) one notice to each supervisor naming their people. Returns the
        messages queued."""
        incident = await self.store.get_incident(incident_id)
        contacts = self.catalog().contacts
        now = self.clock.now()
        acked = {a.person_id for a in await self.store.acks(incident_id) if a.version == version}
        reached = {d.key.person_id: d for d in await self.store.deliveries(incident_id)
                   if d.key.version == version and d.key.is_script}
        waiting = sorted(p for p in reached if p not in acked)
        notices: list[tuple[str, Notice]] = []  # (person to tell, what)
        if not supervisors:
            notices = [(p, reminder(incident, version)) for p in waiting]
        else:
            by_boss: dict[str, list[str]] = {}
            for person_id in waiting:
                boss = contacts.people[person_id].supervisor if person_id in contacts.people else None
                if boss is not None:
                    by_boss.setdefault(boss, []).append(contacts.people[person_id].name)
            notices = [(boss, supervisor_notice(incident, version, names)) for boss, names in by_boss.items()]
        queued = 0
        purpose = purpose or ("supervisor" if supervisors else "reminder")
        for person_id, notice in notices:
            queued += await self._notice(incident_id, version, person_id, purpose, notice)
        kind = "audience_supervisor" if supervisors else "audience_reminder"
        await self.store.append_timeline(incident_id, TimelineEvent(at=now, kind=kind, data={
            "version": version, "not_acknowledged": waiting, "messages": queued}))
        self.wake()
        return queued
