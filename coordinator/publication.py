"""The official script, from draft to the last delivery written:

    incident opens ──► role holders told; version 1 drafted from the playbook's templates
        approval: auto (and nothing missing) ──► published at once
        approval: leader ──► waits for the leader's approve
    published ──► one delivery per person in scope and channel (outbox, deduplicated),
                  written in chunks under a claimed step another instance can finish
    leader edits ──► version N+1 ("此口径替代 vN"), approved, published the same way
    status_update step ──► an update under the wording in force
    resolved ──► the stand-down, to everyone the wording reached
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from . import changes, metrics
from .config.catalog import Catalog
from .clock import Clock
from .errors import ScriptError
from .incident_updates import IncidentUpdates
from .models import (
    Delivery,
    DeliveryKey,
    Incident,
    IncidentStatus,
    ScriptKind,
    ScriptVersion,
    TimelineEvent,
)
from .notifier import Notifier
from .outbox import Wake
from .replies import with_code
from .roster import in_scope, place_on
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


class Publication:
    def __init__(self, *, store: Store, catalog: Callable[[], Catalog], clock: Clock, updates: IncidentUpdates,
                 notifier: Notifier, wake: Wake, tz: ZoneInfo, worker: str) -> None:
        """`wake` tells the outbox that messages are waiting (the outbox is built after
        this: no loop between the two)."""
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.update = updates.update
        self.announce = updates.announce
        self.notifier = notifier
        self.tz = tz
        self.worker = worker
        self.wake = wake.set
        self.taken = wake.taken

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
            region_name = catalog.contacts.regions[inc.region].name if inc.region in catalog.contacts.regions else "全省"
            merged = {**inc.params, **params} if kind == ScriptKind.script else {**_latest_params(inc), **params}
            version = compose(
                catalog.templates, inc.plan, inc, kind=kind, params=merged, author=author, now=now, tz=self.tz,
                region_name=region_name, category_name=catalog.categories.get(inc.category, inc.category),
            )
            if texts:
                version = _with_texts(version, texts, inc.code)
            drafted[:] = [version]
            return changes.add_version(inc, now, version, author)

        await self.update(incident_id, add)
        return drafted[0]

    async def approve(self, incident_id: str, version: int, by: str) -> int:
        """Approve a version and send it; returns the deliveries created."""
        now = self.clock.now()

        incident = await self.update(incident_id, lambda inc: changes.approve(inc, now, version, by))
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
        await self.notifier.notify_roles(incident, None, "assigned")  # keyed per role: sent once
        current = await self.store.get_incident(incident.id)
        if not current.scripts:
            await self.draft_and_send(incident.id, ScriptKind.script, "system")
        elif not any(v.approved for v in current.scripts):
            await self._send_if_allowed(current, current.scripts[0])  # drafted, then the opener died
        await self.store.finish_step(incident.id, FIRST_WORDING)

    # --- writing deliveries --------------------------------------------------------

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
            allowed = [c for c in playbook.audience.channel_order if c in recipient.channels]
            if not allowed:  # none of the playbook's channels is open to them
                left_out.append(recipient.person.id)
                recipients -= 1
                continue
            # SMS to the first phone open to us that has not replied STOP (the main one as a
            # rule); the next phones only if it fails or is not delivered (messages.py).
            places = [(c, place_on(recipient.person, c, catalog.contacts.do_not_contact, today, stopped))
                      for c in allowed]
            channels = [(c, where) for c, where in places if where is not None]
            if playbook.audience.in_turn:
                channels = channels[:1]  # the next one only if this one is not read or delivered in time
            for channel, (address, phone) in channels:  # a STOP to all their phones leaves the email
                batch.append(Delivery(key=DeliveryKey(incident_id=incident.id, version=version,
                                                      person_id=recipient.person.id, medium=channel, phone=phone),
                                      address=address, content_hash=script.content_hash, updated_at=now))
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
        if version == 1 and incident.surge is not None:
            metrics.FIRST_SCRIPT_SECONDS.observe(max(0.0, (now - incident.surge.detected_at).total_seconds()))
        sent = TimelineEvent(at=now, kind="script_sent", data={
            "version": version, "kind": script.kind.value, "deliveries": created, "recipients": recipients,
            "do_not_contact": left_out, "hash": script.content_hash})
        await self.store.append_timeline(incident.id, sent)
        await self.announce(incident, [sent], f"v{version}")
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

