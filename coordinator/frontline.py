"""The official script to the frontline, the second half of the incident story:

    incident opens ──► version 1 drafted from the playbook's templates
        approval: auto (and nothing missing) ──► published at once
        approval: leader ──► waits for the leader's approve
    published ──► one delivery per person in scope and channel (outbox, deduplicated)
    leader edits ──► version N+1 ("此口径替代 vN"), approved, published the same way
    status_update step ──► an update under the wording in force
    resolved ──► the stand-down, to everyone the wording reached
    SMS failed for good ──► the same version by email instead
    acks ──► the signed email link (if the incident bears out what it names), or an SMS
             reply ("1", "1 K7Q"): exactly one role or version of one incident, as
             replies.py decides, answered by SMS
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

from .acklinks import LINK_PURPOSES, AckClaim, AckTokenInvalid, carries_link, make_token, unfounded
from .catalog import Catalog
from .clock import Clock
from .errors import IncidentNotFound, InvalidAction, ScriptError, SendError
from .notices import Notice, reminder, role_notice, supervisor_notice
from .models import (
    Ack,
    Delivery,
    DeliveryKey,
    Incident,
    IncidentStatus,
    Medium,
    ScriptKind,
    ScriptVersion,
    TimelineEvent,
)
from .incident_updates import IncidentUpdates
from .outbox import Content, Wake
from .replies import RECENT_MESSAGES, ackable, answer_text, decide, parse_reply, with_code
from .roster import address_of, channels_of, in_scope
from .store import Store
from .wording import compose, sent_at_once

log = logging.getLogger(__name__)

# Deliveries written per transaction when a version is published; the first chunk is
# small so that the first messages leave while the rest are still being written.
FIRST_CHUNK = 50
PUBLISH_CHUNK = 500
# How long a publication waits for this process's outbox to claim its first chunk.
FIRST_CLAIM_WAIT = 0.1
# A publication is claimed (a step of its incident) while it is written, renewed with
# every chunk: a live instance's tick takes over a dead publisher's within this plus a
# tick, and never one still being written.
PUBLISH_LEASE_SECONDS = 5.0




@dataclass(frozen=True)
class Replied:
    acked: list[tuple[str, int]]
    """What the reply acknowledged: (incident, version), version 0 for a role."""
    answer: str | None
    """The SMS to send back (replies.answer_text), or None."""


class Frontline:
    def __init__(
        self,
        *,
        store: Store,
        catalog: Callable[[], Catalog],
        clock: Clock,
        updates: IncidentUpdates,
        wake: Wake,
        tz: ZoneInfo,
        ack_secret: str,
        public_url: str,
        worker: str,
        ack_ttl: timedelta = timedelta(days=3),
    ) -> None:
        """`wake` tells the outbox that messages are waiting (the outbox is built after
        this, with this side's content and fallback: no loop between the two)."""
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.updates = updates
        self.update = updates.update
        self.tz = tz
        self.ack_secret = ack_secret
        self.public_url = public_url.rstrip("/")
        self.ack_ttl = ack_ttl
        self.worker = worker
        self.wake = wake.set
        self.taken = wake.taken
        self._content: dict[tuple[str, int], ScriptVersion] = {}

    # --- versions ------------------------------------------------------------------

    async def draft(
        self, incident_id: str, kind: ScriptKind, params: dict[str, str], author: str,
        texts: dict[str, str] | None = None,
    ) -> ScriptVersion:
        """Add the next version to the incident, unapproved. `texts` replaces rendered
        channel texts (the leader's own wording)."""
        catalog = self.catalog()
        now = self.clock.now()
        drafted: list[ScriptVersion] = []

        def add(inc: Incident) -> tuple[Incident, list[TimelineEvent]]:
            if inc.status == IncidentStatus.closed:
                raise ScriptError(f"incident {inc.id} is closed")
            playbook = inc.plan
            region_name = catalog.contacts.regions[inc.region].name if inc.region in catalog.contacts.regions else "全省"
            merged = {**inc.params, **params} if kind == ScriptKind.script else {**_latest_params(inc), **params}
            version = compose(
                catalog.templates, playbook, inc, kind=kind, params=merged, author=author, now=now, tz=self.tz,
                region_name=region_name, category_name=catalog.categories.get(inc.category, inc.category),
            )
            if texts:
                version = _with_texts(version, texts, inc.code)
            drafted[:] = [version]
            event = TimelineEvent(at=now, kind="script_drafted", actor=author, data={
                "version": version.version, "kind": kind.value, "hash": version.content_hash,
                "sms_segments": version.sms_segments, "sms_encoding": version.sms_encoding,
                "missing": version.missing})
            return inc.model_copy(update={"scripts": [*inc.scripts, version]}), [event]

        await self.update(incident_id, add)
        return drafted[0]

    async def approve(self, incident_id: str, version: int, by: str) -> int:
        """Approve a version and send it; returns the deliveries created."""
        now = self.clock.now()

        def approve(inc: Incident) -> tuple[Incident, list[TimelineEvent]]:
            found = inc.script(version)
            if found is None:
                raise ScriptError(f"incident {inc.id} has no script version {version}")
            if found.approved:
                return inc, []
            if found.missing:
                raise ScriptError(f"version {version} still lacks {', '.join(found.missing)}: draft a new one")
            scripts = [v.model_copy(update={"approved_by": by, "approved_at": now}) if v.version == version else v
                       for v in inc.scripts]
            update: dict[str, Any] = {"scripts": scripts}
            events = [TimelineEvent(at=now, kind="script_approved", actor=by, data={"version": version})]
            if found.kind == ScriptKind.script and inc.scripted_at is None and inc.is_open:
                update.update(status=IncidentStatus.scripted, scripted_at=now)
                events.append(TimelineEvent(at=now, kind="status", actor=by, data={"status": "scripted"}))
            return inc.model_copy(update=update), events

        incident = await self.update(incident_id, approve)
        return await self.publish(incident, version)

    async def draft_and_send(self, incident_id: str, kind: ScriptKind, author: str,
                             params: dict[str, str] | None = None,
                             texts: dict[str, str] | None = None) -> tuple[ScriptVersion, int]:
        """Draft; approve at once where the playbook allows it (`wording.sent_at_once`).
        Returns the version and the deliveries created (0: it waits for approval)."""
        version = await self.draft(incident_id, kind, params or {}, author, texts)
        return version, await self._send_if_allowed(await self.store.get_incident(incident_id), version)

    async def _send_if_allowed(self, incident: Incident, version: ScriptVersion) -> int:
        if sent_at_once(incident.plan, version):
            return await self.approve(incident.id, version.version, "auto")
        return 0

    async def open_with_wording(self, incident: Incident) -> None:
        """What follows an incident's opening: its role holders told, version 1 drafted
        and, where the playbook allows, sent. A claimed step of the incident, done once:
        by the instance that opened it, or, if that one died half way, by a live
        instance's tick (`finish_publishing`)."""
        owner = self._owner()
        if not await self._claim(incident.id, FIRST_WORDING, owner):
            return
        await self.notify_roles(incident, None, "assigned")  # keyed per role: sent once
        current = await self.store.get_incident(incident.id)
        if not current.scripts:
            await self.draft_and_send(incident.id, ScriptKind.script, "system")
        elif not any(v.approved for v in current.scripts):
            await self._send_if_allowed(current, current.scripts[0])  # drafted, then the opener died
        await self.store.finish_step(incident.id, FIRST_WORDING)

    # --- sending -------------------------------------------------------------------

    async def publish(self, incident: Incident, version: int, owner: str | None = None) -> int:
        """One delivery per person in the playbook's audience and channel (the
        do-not-contact list applied per channel), written in chunks, the outbox woken
        after each. The publication is a claimed step of the incident, renewed with every
        chunk: if this instance dies half way, another one's tick finishes it
        (`finish_publishing`); deliveries already written are deduplicated. The
        `script_sent` timeline event is written last."""
        script = incident.script(version)
        assert script is not None and script.approved
        step = publish_step(version)
        owner = owner or self._owner()  # given: the caller holds the claim already
        if not await self._claim(incident.id, step, owner):
            log.info("incident %s: version %d is being (or was) published elsewhere", incident.id, version)
            return 0
        catalog = self.catalog()
        now = self.clock.now()
        playbook = incident.plan
        today = now.astimezone(self.tz).date()
        stopped = await self.store.opted_out()
        created = recipients = 0
        left_out: list[str] = []
        batch: list[Delivery] = []
        chunk, first = FIRST_CHUNK, True
        for recipient in in_scope(playbook, catalog.contacts, incident.region, today,
                                  teams=incident.audience_teams, regions=incident.audience_regions):
            if not recipient.channels:
                left_out.append(recipient.person.id)
                continue
            recipients += 1
            for channel in recipient.channels:
                if channel == "sms" and recipient.person.phone in stopped:
                    continue  # they replied STOP: the email still reaches them
                batch.append(Delivery(key=DeliveryKey(incident_id=incident.id, version=version,
                                                      person_id=recipient.person.id, medium=channel),
                                      address=address_of(recipient.person, channel),
                                      content_hash=script.content_hash, updated_at=now))
            if len(batch) >= chunk:
                created += await self.store.add_deliveries(batch)
                self.wake()
                if first:
                    await self.taken(FIRST_CLAIM_WAIT)  # the first messages leave before the rest is written
                batch, chunk, first = [], PUBLISH_CHUNK, False
                if not await self._claim(incident.id, step, owner):
                    log.warning("incident %s: the publication of version %d was taken over", incident.id, version)
                    return created
        if batch:
            created += await self.store.add_deliveries(batch)
        await self.store.append_timeline(incident.id, TimelineEvent(at=now, kind="script_sent", data={
            "version": version, "kind": script.kind.value, "deliveries": created, "recipients": recipients,
            "do_not_contact": left_out, "hash": script.content_hash}))
        await self.store.finish_step(incident.id, step)
        self.wake()
        return created

    def _owner(self) -> str:
        """A claim's owner: this worker, and this one call of it (a tick and a request in
        the same process must not renew each other's claims)."""
        return f"{self.worker}/{secrets.token_hex(4)}"

    async def _claim(self, incident_id: str, step: str, owner: str) -> bool:
        """Claim (or, as its owner, renew) a step of the incident's wording."""
        return await self.store.claim_step(incident_id, step, owner, self.clock.now(), PUBLISH_LEASE_SECONDS)

    async def finish_publishing(self, incident: Incident, done: set[str]) -> int:
        """Finish what a dead instance left half done: the incident's opening (role
        notices, version 1) and the publication of its newest approved version (an
        older one is superseded: sending it now would be wrong), unless a live instance
        holds them. `done`: the incident's finished steps. Returns the deliveries created
        by a finished publication."""
        if incident.status == IncidentStatus.closed:
            return 0
        if FIRST_WORDING not in done and incident.is_open and self.clock.now() - incident.opened_at > timedelta(
                seconds=PUBLISH_LEASE_SECONDS):
            await self.open_with_wording(incident)
            incident = await self.store.get_incident(incident.id)
        approved = [v for v in incident.scripts if v.approved]
        if not approved:
            return 0
        newest = approved[-1].version
        step = publish_step(newest)
        owner = self._owner()
        if step in done or not await self._claim(incident.id, step, owner):
            return 0
        # Published before publications were claimed steps: the timeline says so.
        if any(e.kind == "script_sent" and e.data.get("version") == newest
               for e in await self.store.timeline(incident.id)):
            await self.store.finish_step(incident.id, step)
            return 0
        log.info("incident %s: finishing the publication of version %d", incident.id, newest)
        return await self.publish(incident, newest, owner)

    async def resume_publishing(self) -> int:
        """`finish_publishing` for every incident not closed (at start-up)."""
        created = 0
        for incident in await self.store.list_incidents():
            if incident.status != IncidentStatus.closed:
                created += await self.finish_publishing(incident, await self.store.finished_steps(incident.id))
        return created

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

    async def fallback(self, delivery: Delivery, error: SendError) -> None:
        """An SMS that failed for good goes out again as email, if the person has one."""
        if delivery.key.medium != "sms":
            return
        person = self.catalog().contacts.people.get(delivery.key.person_id)
        now = self.clock.now()
        if person is None or "email" not in channels_of(person, self.catalog().contacts.do_not_contact,
                                                         now.astimezone(self.tz).date()):
            await self.store.append_timeline(delivery.key.incident_id, TimelineEvent(at=now, kind="delivery_failed", data={
                "person": delivery.key.person_id, "channel": "sms", "error": error.code, "fallback": None}))
            return
        assert person.email is not None
        email = Delivery(key=delivery.key.model_copy(update={"medium": Medium.email}),
                         address=person.email, content_hash=delivery.content_hash, fell_back=True,
                         text=delivery.text, subject=delivery.subject, updated_at=now)
        added = await self.store.add_delivery(email)
        await self.store.append_timeline(delivery.key.incident_id, TimelineEvent(at=now, kind="delivery_failed", data={
            "person": delivery.key.person_id, "channel": "sms", "error": error.code,
            "fallback": "email" if added else "email already sent"}))
        self.wake()

    async def notify_roles(self, incident: Incident, roles: list[str] | None, purpose: str) -> int:
        """Tell each holder of `roles` (all if None) that isn't acknowledged yet what they
        hold and by when to acknowledge. One message per (role, purpose)."""
        queued = 0
        for role in incident.roles:
            if (roles is not None and role.role not in roles) or role.holder is None or role.acked_at is not None:
                continue
            deadline = role.deadline.astimezone(self.tz).strftime("%H:%M") if role.deadline else "尽快"
            notice = role_notice(incident, role.title, purpose, self._place(incident), deadline)
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

    # --- acknowledgements ----------------------------------------------------------

    async def acknowledge(self, incident_id: str, version: int, person_id: str, via: str) -> bool:
        ack = Ack(incident_id=incident_id, person_id=person_id, version=version, via=via, at=self.clock.now())
        return await self.store.record_ack(ack, TimelineEvent(
            at=ack.at, kind="script_acked", actor=person_id, data={"version": version, "via": via}))

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
        was sent (found through the store's index by phone, not by reading incidents);
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
        sent = await self.store.sms_sent_to(phone, RECENT_MESSAGES)
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
        return Replied(done, answer_text(decision, self._place))

    def _place(self, incident: Incident) -> str:
        """How the incident's region reads in a notice or an answer."""
        region = self.catalog().contacts.regions.get(incident.region)
        return region.name if region is not None else "全省" if incident.region == "*" else incident.region


# The incident step that stands for its opening's messages: role notices and version 1.
FIRST_WORDING = "first-wording"


def publish_step(version: int) -> str:
    """The incident step that stands for publishing `version`."""
    return f"publish:v{version}"


def _latest_params(incident: Incident) -> dict[str, str]:
    return dict(incident.scripts[-1].params) if incident.scripts else dict(incident.params)


def _with_texts(version: ScriptVersion, texts: dict[str, str], code: str) -> ScriptVersion:
    from .scripts import Rendered
    from .segments import sms_segments

    merged = {f: texts.get(f, getattr(version, f)) for f in ("sms", "email_subject", "email_text", "email_html")}
    merged["sms"] = with_code(merged["sms"], code)
    rendered = Rendered(**merged)
    encoding, segments, _ = sms_segments(rendered.sms)
    return version.model_copy(update={**merged, "content_hash": rendered.content_hash, "sms_encoding": encoding,
                                      "sms_segments": segments})

