"""What the outbox sends for a delivery, and where a message goes when its medium fails
for good: a script version's texts (or a notice's own), with a signed acknowledgement
link on the emails that carry one (and a link per version on DingTalk's cards); a
message that cannot be delivered goes out again on the person's next channel (an SMS:
their next phone, then the email), and channels in turn move on for those their channel
has not reached."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from .acklinks import AckClaim, carries_link, make_token
from .messengers.links import CardClaim, make_card_token
from .clock import Clock
from .config.catalog import Catalog
from .errors import IncidentNotFound, InvalidAction, SendError
from .models import Delivery, DeliveryStatus, Medium, ScriptVersion, TimelineEvent
from .outbox import Content, Wake
from .roster import open_phones, reach
from .store import Store


class Messages:
    def __init__(self, *, store: Store, catalog: Callable[[], Catalog], clock: Clock, wake: Wake, tz: ZoneInfo,
                 ack_secret: str, public_url: str, ack_ttl: timedelta = timedelta(days=3)) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.wake = wake.set
        self.tz = tz
        self.ack_secret = ack_secret
        self.public_url = public_url.rstrip("/")
        self.ack_ttl = ack_ttl
        self._content: dict[tuple[str, int], ScriptVersion] = {}

    async def content(self, delivery: Delivery) -> Content:
        ack_url = None
        if carries_link(delivery.key):
            claim = AckClaim(delivery.key.incident_id, delivery.key.version, delivery.key.person_id,
                             self.clock.now() + self.ack_ttl)
            ack_url = f"{self.public_url}/ack/{make_token(self.ack_secret, claim)}"
        if delivery.text is not None and not delivery.key.is_script:  # a notice: its text and subject are its own
            return Content(sms=delivery.text, email_subject=delivery.subject or "", email_text=delivery.text,
                           email_html="", ack_url=ack_url)
        key = (delivery.key.incident_id, delivery.key.version)
        script = self._content.get(key)
        if script is None:
            incident = await self.store.get_incident(delivery.key.incident_id)
            script = incident.script(delivery.key.version)
            if script is None:
                raise IncidentNotFound(f"{delivery.key.incident_id} v{delivery.key.version}")
            self._content[key] = script
        return Content(sms=script.sms, email_subject=script.email_subject, email_text=script.email_text,
                       email_html=script.email_html, sms_segments=script.sms_segments, ack_url=ack_url)

    def card_link(self, incident_id: str, version: int) -> str:
        """The DingTalk card's button link for `version` of the incident: signed, naming no
        person (messengers/links.py says why)."""
        claim = CardClaim(incident_id, version, self.clock.now() + self.ack_ttl)
        return f"{self.public_url}/hooks/dingtalk/ack/{make_card_token(self.ack_secret, claim)}"

    def _address_on(self, person_id: str, medium: str, stopped: set[str]) -> tuple[str, int] | None:
        """The person's address on `medium` if it is open to us today (SMS: their first
        open phone, and which one it is)."""
        contacts = self.catalog().contacts
        person = contacts.people.get(person_id)
        if person is None:
            return None
        return reach(person, medium, contacts.do_not_contact, self.clock.now().astimezone(self.tz).date(), stopped)

    def _next_phone(self, person_id: str, after: int, used: set[int], stopped: set[str]) -> tuple[str, int] | None:
        """The person's next phone after their `after`-th one that is open today, has not
        replied STOP and was not sent this message yet (`used`), with its place."""
        contacts = self.catalog().contacts
        person = contacts.people.get(person_id)
        if person is None:
            return None
        usable = set(open_phones(person, contacts.do_not_contact, self.clock.now().astimezone(self.tz).date()))
        return next(((n, i) for i, n in enumerate(person.numbers)
                     if i > after and i not in used and n in usable and n not in stopped), None)

    async def _order(self, incident_id: str) -> tuple[str, ...]:
        """The incident's audience channels, in order (the playbook as snapshotted)."""
        try:
            return (await self.store.get_incident(incident_id)).plan.audience.channel_order
        except (IncidentNotFound, InvalidAction):
            return ("sms", "email")

    def _next_open(self, person_id: str, order: tuple[str, ...], after: Delivery, used: list[Delivery],
                   stopped: set[str]) -> tuple[str, str, int] | None:
        """Where the message `after` goes next: an SMS to the person's next phone not sent
        it yet (`used`: their messages of it), else the first channel after its medium in
        `order` that the person has open and was not used; the medium, address, phone."""
        if after.key.medium == Medium.sms:
            phones = {d.key.phone for d in used if d.key.medium == Medium.sms}
            phone = self._next_phone(person_id, after.key.phone, phones | {after.key.phone}, stopped)
            if phone is not None:
                return "sms", phone[0], phone[1]
        medium_used = {d.key.medium.value for d in used}
        rest = order[order.index(after.key.medium.value) + 1:] if after.key.medium.value in order else ()
        for medium in rest:
            if medium in medium_used:
                continue
            address = self._address_on(person_id, medium, stopped)
            if address is not None:
                return medium, address[0], address[1]
        return None

    async def next_channel(self, incident_id: str, version: int) -> int:
        """Channels in turn: everyone whose latest channel for `version` has not reached
        them (`reached`) and who has not acknowledged it gets the next channel in the
        playbook's order now (for SMS then email: the email); an SMS goes to the person's
        next phone first, if they have one. Returns the messages queued."""
        order = await self._order(incident_id)
        deliveries = await self.store.deliveries(incident_id)
        acked = {a.person_id for a in await self.store.acks(incident_id) if a.version == version}
        stopped = await self.store.opted_out()
        mine: dict[str, list[Delivery]] = {}
        for d in deliveries:
            if d.key.version == version and d.key.is_script:
                mine.setdefault(d.key.person_id, []).append(d)
        now, queued, waiting = self.clock.now(), 0, []
        by_medium: dict[str, int] = {}
        for person_id, sent in sorted(mine.items()):
            latest = max(sent, key=lambda d: (order.index(d.key.medium) if d.key.medium in order else -1, d.key.phone))
            if person_id in acked or reached(latest) or (
                    latest.key.medium == Medium.sms and any(reached(d) for d in sent if d.key.medium == Medium.sms)):
                continue
            waiting.append(person_id)
            nxt = self._next_open(person_id, order, latest, sent, stopped)
            if nxt is not None and await self.store.add_delivery(_by(latest, nxt[0], nxt[1], now, nxt[2])):
                queued += 1
                by_medium[nxt[0]] = by_medium.get(nxt[0], 0) + 1
        await self.store.append_timeline(incident_id, TimelineEvent(at=now, kind="next_channel", data={
            "version": version, "not_delivered": waiting, "emails": by_medium.get("email", 0),
            "phones": by_medium.get("sms", 0), "channels": by_medium}))
        self.wake()
        return queued

    async def fallback(self, delivery: Delivery, error: SendError) -> None:
        """A message that failed for good goes out again on the person's next channel in
        the playbook's order (an SMS: to their next phone, else the email), if they have
        one open. The stand-in's key is its own (another phone or medium), so it is added
        once however often, and by whichever instance, the failure is reported."""
        medium = delivery.key.medium.value
        if medium == "email":
            return
        now = self.clock.now()
        order = await self._order(delivery.key.incident_id)
        stopped = await self.store.opted_out() if "sms" in order else set()  # numbers that replied STOP
        nxt = self._next_open(delivery.key.person_id, order, delivery, [], stopped)
        data: dict[str, object] = {"person": delivery.key.person_id, "channel": medium, "error": error.code,
                                   "fallback": None}
        if nxt is not None:
            added = await self.store.add_delivery(_by(delivery, nxt[0], nxt[1], now, nxt[2]))
            data["fallback"] = nxt[0] if added else f"{nxt[0]} already sent"
            if nxt[0] == "sms":
                data["phone"] = nxt[2] + 1  # the person's second (third...) phone; never the number
        await self.store.append_timeline(delivery.key.incident_id, TimelineEvent(
            at=now, kind="delivery_failed", data=data))
        if nxt is not None:
            self.wake()


def reached(delivery: Delivery) -> bool:
    """Whether a message has reached its person as far as its channel can tell: DingTalk
    when read; WeCom never (it reports no read state for app messages: only the press of
    the card's button, an acknowledgement, counts); SMS and email when delivered."""
    if delivery.key.medium == Medium.dingtalk:
        return delivery.status == DeliveryStatus.read
    if delivery.key.medium == Medium.wecom:
        return False
    return delivery.status in (DeliveryStatus.delivered, DeliveryStatus.read)


def _by(sent: Delivery, medium: str, address: str, now: datetime, phone: int = 0) -> Delivery:
    """The message that stands in for `sent` on `medium` (SMS: the person's `phone`-th
    phone): same version or notice, same content."""
    return Delivery(key=sent.key.model_copy(update={"medium": Medium(medium), "phone": phone}), address=address,
                    content_hash=sent.content_hash, fell_back=True, text=sent.text, subject=sent.subject, updated_at=now)


def _by_email(sms: Delivery, address: str, now: datetime) -> Delivery:
    """The email that stands in for `sms`: same version or notice, same content."""
    return _by(sms, "email", address, now)
