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
from .roster import CHANNELS, channels_of, open_phones, reach
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

    async def _notice(self, incident_id: str, version: int, person_id: str, purpose: str, notice: Notice,
                      prefer: Delivery | None = None) -> int:
        """Queue a one-off message (not a script version) to a person on the channel of
        `prefer` (the script's message that reached them; by SMS, to the same phone) if
        still open, else the first channel open to them (by SMS: their first open phone),
        keyed by `purpose` so it is sent once; 1 if queued."""
        contacts = self.catalog().contacts
        person = contacts.people.get(person_id)
        now = self.clock.now()
        today = now.astimezone(self.tz).date()
        open_ = channels_of(person, contacts.do_not_contact, today) if person else []
        if person is None or not open_:
            return 0
        medium = prefer.key.medium.value if prefer is not None and prefer.key.medium in open_ else open_[0]
        # SMS: the person's first phone open to us (their main one); a failure moves to the next (messages.py).
        address, phone = reach(person, medium, contacts.do_not_contact, today) or ("", 0)
        if prefer is not None and medium == "sms" and prefer.address in open_phones(person, contacts.do_not_contact, today):
            address, phone = prefer.address, person.numbers.index(prefer.address)  # the phone the script went to
        delivery = Delivery(key=DeliveryKey(incident_id=incident_id, version=version, person_id=person_id,
                                            medium=medium, purpose=purpose, phone=phone),
                            address=address, content_hash="", text=notice.text,
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
        reached: dict[str, Delivery] = {}
        for d in await self.store.deliveries(incident_id):  # per person, a channel the version went on
            if d.key.version == version and d.key.is_script and (
                    d.key.person_id not in reached or _rank(d) < _rank(reached[d.key.person_id])):
                reached[d.key.person_id] = d
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
            used = reached[person_id] if person_id in reached and not supervisors else None
            queued += await self._notice(incident_id, version, person_id, purpose, notice, prefer=used)
        kind = "audience_supervisor" if supervisors else "audience_reminder"
        await self.store.append_timeline(incident_id, TimelineEvent(at=now, kind=kind, data={
            "version": version, "not_acknowledged": waiting, "messages": queued}))
        self.wake()
        return queued


def _rank(delivery: Delivery) -> tuple[bool, int]:
    """Which of a person's messages of a version a reminder follows: one not failed,
    then SMS, email, DingTalk, WeCom (the contacts' order of channels)."""
    failed = delivery.status.value in ("failed", "undelivered")
    return failed, CHANNELS.index(delivery.key.medium.value) if delivery.key.medium.value in CHANNELS else len(CHANNELS)
