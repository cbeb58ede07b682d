"""What the outbox sends for a delivery, and where a message goes when its medium fails
for good: a script version's texts (or a notice's own), with a signed acknowledgement
link on the emails that carry one; an SMS that cannot be delivered goes out again as
email, if the person has one still open."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from .acklinks import AckClaim, carries_link, make_token
from .clock import Clock
from .config.catalog import Catalog
from .errors import IncidentNotFound, SendError
from .models import Delivery, DeliveryStatus, Medium, ScriptVersion, TimelineEvent
from .outbox import Content, Wake
from .roster import channels_of
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

    def _email_of(self, person_id: str) -> str | None:
        """The person's email, if it is open to us today."""
        contacts = self.catalog().contacts
        person = contacts.people.get(person_id)
        today = self.clock.now().astimezone(self.tz).date()
        if person is None or "email" not in channels_of(person, contacts.do_not_contact, today):
            return None
        return person.email

    async def next_channel(self, incident_id: str, version: int) -> int:
        """Channels in turn: everyone whose SMS of `version` has no delivery receipt and
        who has not acknowledged it gets the email now. Returns the emails queued."""
        deliveries = await self.store.deliveries(incident_id)
        acked = {a.person_id for a in await self.store.acks(incident_id) if a.version == version}
        emailed = {d.key.person_id for d in deliveries if d.key.version == version and d.key.is_script
                   and d.key.medium == Medium.email}
        now, queued, waiting = self.clock.now(), 0, []
        for d in deliveries:
            if (d.key.version != version or not d.key.is_script or d.key.medium != Medium.sms
                    or d.status == DeliveryStatus.delivered or d.key.person_id in acked | emailed):
                continue
            waiting.append(d.key.person_id)
            address = self._email_of(d.key.person_id)
            if address is not None:
                queued += await self.store.add_delivery(_by_email(d, address, now))
        await self.store.append_timeline(incident_id, TimelineEvent(at=now, kind="next_channel", data={
            "version": version, "not_delivered": sorted(waiting), "emails": queued}))
        self.wake()
        return queued

    async def fallback(self, delivery: Delivery, error: SendError) -> None:
        """An SMS that failed for good goes out again as email, if the person has one."""
        if delivery.key.medium != "sms":
            return
        now = self.clock.now()
        address = self._email_of(delivery.key.person_id)
        if address is None:
            await self.store.append_timeline(delivery.key.incident_id, TimelineEvent(at=now, kind="delivery_failed", data={
                "person": delivery.key.person_id, "channel": "sms", "error": error.code, "fallback": None}))
            return
        added = await self.store.add_delivery(_by_email(delivery, address, now))
        await self.store.append_timeline(delivery.key.incident_id, TimelineEvent(at=now, kind="delivery_failed", data={
            "person": delivery.key.person_id, "channel": "sms", "error": error.code,
            "fallback": "email" if added else "email already sent"}))
        self.wake()


def _by_email(sms: Delivery, address: str, now: datetime) -> Delivery:
    """The email that stands in for `sms`: same version or notice, same content."""
    return Delivery(key=sms.key.model_copy(update={"medium": Medium.email}), address=address,
                    content_hash=sms.content_hash, fell_back=True, text=sms.text, subject=sms.subject, updated_at=now)
