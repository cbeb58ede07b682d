"""Acknowledgements of the script: the signed email link (if the incident bears out
what it names) and the SMS reply ("1", "1 K7Q"), which acknowledges exactly one role or
version of one incident, as replies.py decides, and is answered by SMS."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from . import metrics
from .acklinks import LINK_PURPOSES, AckClaim, AckTokenInvalid, unfounded
from .config.catalog import Catalog
from .clock import Clock
from .errors import IncidentNotFound
from .incident_updates import IncidentUpdates
from .models import Ack, Delivery, DeliveryKey, Incident, IncidentStatus, Medium, TimelineEvent
from .notices import place
from .replies import RECENT_MESSAGES, ackable, answer_text, decide, parse_reply
from .store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Replied:
    acked: list[tuple[str, int]]
    """What the reply acknowledged: (incident, version), version 0 for a role."""
    answer: str | None
    """The SMS to send back (replies.answer_text), or None."""


class Acknowledgements:
    def __init__(self, *, store: Store, catalog: Callable[[], Catalog], clock: Clock,
                 updates: IncidentUpdates) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.updates = updates
        # (incident, version) -> when the version was published (approved): time to acknowledge.
        self._published: dict[tuple[str, int], datetime] = {}

    async def acknowledge(self, incident_id: str, version: int, person_id: str, via: str) -> bool:
        ack = Ack(incident_id=incident_id, person_id=person_id, version=version, via=via, at=self.clock.now())
        new = await self.store.record_ack(ack, TimelineEvent(
            at=ack.at, kind="script_acked", actor=person_id, data={"version": version, "via": via}))
        if new:
            metrics.ACKS.labels(via).inc()
            published = await self._published_at(incident_id, version)
            if published is not None:
                metrics.ACK_SECONDS.labels(via).observe(max(0.0, (ack.at - published).total_seconds()))
        return new

    async def _published_at(self, incident_id: str, version: int) -> datetime | None:
        """When a version went out (its approval: it is published at once), read once."""
        key = (incident_id, version)
        if key not in self._published:
            try:
                script = (await self.store.get_incident(incident_id)).script(version)
            except IncidentNotFound:
                return None
            if script is None or script.approved_at is None:
                return None
            if len(self._published) >= 4096:
                self._published.clear()
            self._published[key] = script.approved_at
        return self._published[key]

    async def acknowledge_link(self, claim: AckClaim) -> bool:
        """An email link's acknowledgement, once `check_link` accepts its claim."""
        await self.check_link(claim)
        return await self.acknowledge(claim.incident_id, claim.version, claim.person_id, "email")

    async def check_link(self, claim: AckClaim) -> None:
        """Raises AckTokenInvalid (unfounded) unless the incident bears the link's claim
        out (`acklinks.unfounded`): its signature proves only that we made the token."""
        try:
            incident: Incident | None = await self.store.get_incident(claim.incident_id)
        except IncidentNotFound:
            incident = None
        contact = claim.person_id in self.catalog().contacts.people
        emailed = False
        if incident is not None and contact:
            for purpose in LINK_PURPOSES:
                key = DeliveryKey(incident_id=claim.incident_id, version=claim.version, person_id=claim.person_id,
                                  medium=Medium.email, purpose=purpose)
                if await self.store.get_delivery(key) is not None:
                    emailed = True
                    break
        problem = unfounded(claim, incident, contact, emailed)
        if problem is not None:
            raise AckTokenInvalid("unfounded", problem)

    async def reply(self, phone: str, body: str) -> Replied:
        """An SMS reply from `phone`. An acknowledgement word acknowledges one role or
        version of one incident, as `replies.decide` picks it from the SMS this phone
        was sent (found through the store's index by phone, not by reading incidents;
        for a person with several phones, the SMS any of them was sent);
        the answer to send back says what it did (the channel sends it: Twilio as the
        TwiML answer to its webhook). STOP and START are mirrored (the provider blocks
        the number itself; we stop trying SMS)."""
        parsed = parse_reply(body)
        if parsed.kind in ("stop", "start"):
            await self.store.set_opt_out(phone, parsed.kind == "stop")
            log.info("sms opt-%s mirrored", "out" if parsed.kind == "stop" else "in")
            return Replied([], None)
        if parsed.kind != "ack":
            return Replied([], None)
        sent = await self._sent_to_owner(phone)
        newest = next((d for d in sent if ackable(d) is not None), None)
        if newest is None:
            return Replied([], None)
        person_id = newest.key.person_id  # a phone shared by two people answers for the newest one
        sent = [d for d in sent if d.key.person_id == person_id]
        incidents: dict[str, Incident] = {}
        acked: dict[str, set[int]] = {}
        for incident_id in dict.fromkeys(d.key.incident_id for d in sent):
            try:
                incident = await self.store.get_incident(incident_id)
            except IncidentNotFound:
                continue
            if incident.status == IncidentStatus.closed:
                continue
            incidents[incident_id] = incident
            versions = sorted({d.key.version for d in sent if d.key.incident_id == incident_id and d.key.version})
            acked[incident_id] = await self.store.acked_versions(incident_id, person_id, versions)
        decision = decide(person_id, parsed, sent, incidents, acked)
        done: list[tuple[str, int]] = []
        target = decision.target
        if target is not None and target.role is not None:
            await self.updates.ack_role(target.incident_id, person_id, target.role, via="sms")
            done.append((target.incident_id, 0))
        elif target is not None and target.version is not None:
            if await self.acknowledge(target.incident_id, target.version, person_id, "sms"):
                done.append((target.incident_id, target.version))
        contacts = self.catalog().contacts
        return Replied(done, answer_text(decision, lambda incident: place(contacts, incident)))

    async def _sent_to_owner(self, phone: str) -> list[Delivery]:
        """The SMS sent to `phone`, newest first; for a person with several phones, those
        sent to any of them (a reply from any of their phones answers for the person):
        incidents by their newest message, within one the newest version first (a
        delivery receipt on an older version's SMS must not make it look newer)."""
        owner = self.catalog().contacts.by_phone(phone)
        numbers = owner.numbers if owner is not None and len(owner.numbers) > 1 else (phone,)
        lists = [await self.store.sms_sent_to(n, RECENT_MESSAGES) for n in dict.fromkeys((phone, *numbers))]
        if len(lists) == 1:
            return lists[0]
        mine = [d for found in lists for d in found if owner is not None and d.key.person_id == owner.id]
        mine.sort(key=lambda d: d.updated_at, reverse=True)
        rank = {incident: n for n, incident in enumerate(dict.fromkeys(d.key.incident_id for d in mine))}
        return sorted(mine, key=lambda d: (rank[d.key.incident_id], -d.key.version))[:RECENT_MESSAGES]
