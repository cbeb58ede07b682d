"""The path of an incident, top to bottom. HTTP handlers, the scheduler, drills and the
CLI call into this module only; the decisions are pure functions (playbooks, roster,
escalation, changes, wording, replies) and this module carries them out against the
store, with the script's parts in their own modules (publication, notifier,
acknowledgements).

    complaints ──► intake (validate, store once, repeat flag) ──► stream monitor
          (closed buckets to each stream's detector, a peek at the filling one)
    surge ──► match playbook ──► open incident (one per surge key; later surges attach)
          ──► snapshot the playbook, assign roles from the roster at that moment
          ──► role holders told, version 1 drafted (publication)
    leader's trigger ──► the same, with the leader's parameters
    draft ──► approve (by the leader, or at once where the playbook allows)
          ──► publish: a delivery per person and channel, sent by the outbox
          (an SMS that fails for good goes again by email: messages.py)
    acks ──► role acknowledged (the leader's makes the incident acknowledged);
             a version acknowledged by email link or SMS reply (acknowledgements)
    tick ──► due steps: escalate unacknowledged roles level by level, reminders to
             staff and their supervisors, status updates, follow-up after resolution
    remind now ──► a reminder to all who have not acknowledged; resolve ──► the stand-down
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from zoneinfo import ZoneInfo

from jinja2 import TemplateNotFound

from . import changes
from .config.catalog import Catalog
from .clock import Clock, iso as _iso
from .errors import InvalidAction, PlaybookNotFound, TemplateOutside
from .escalation import DueStep, due_steps
from .acknowledgements import Acknowledgements, Replied
from .acklinks import AckClaim
from .incident_updates import IncidentUpdates
from .logs import log_ids
from .intake import Intake, IntakeResult
from .models import ALL_REGIONS, DRILL_PREFIX, Incident, IncidentStatus, ScriptKind, ScriptVersion, Surge, TimelineEvent, stream_key
from .messages import Messages
from .notifier import Notifier
from .playbooks import SEVERITY_ORDER, match_playbook, script_params, severity_for
from .publication import Publication
from .replies import new_code
from .roster import assign_roles, role_alerts
from .config.schemas import Playbook
from .store import Store
from .detection.streams import Found, StreamMonitor
from .wording import load_templates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Opened:
    incident: Incident
    created: bool


@dataclass(frozen=True)
class DrillSetup:
    """What a running drill adds to the incident it opens: its run, the scenario's
    parameters and its narrower audience (None: the playbook's own)."""

    run_id: str
    params: dict[str, Any]
    teams: list[str] | None = None
    regions: list[str] | None = None


class Pipeline:
    def __init__(
        self,
        *,
        store: Store,
        catalog: Callable[[], Catalog],
        clock: Clock,
        intake: Intake,
        monitor: StreamMonitor,
        updates: IncidentUpdates,
        publication: Publication,
        notifier: Notifier,
        acknowledgements: Acknowledgements,
        messages: Messages,
        drill_setup: Callable[[str], Awaitable[DrillSetup | None]],
        worker: str,
        tz: ZoneInfo,
        step_lease_seconds: float = 60.0,
    ) -> None:
        """`publication`, `notifier`, `acknowledgements` and `messages` are the script's side;
        `drill_setup` finds the running drill behind a drill surge's key."""
        self.store = store
        self.intake = intake
        self.monitor = monitor
        self.updates = updates
        self.update = updates.update
        self.publication = publication
        self.notifier = notifier
        self.acks = acknowledgements
        self.messages = messages
        self.drill_setup = drill_setup
        self.catalog = catalog
        self.clock = clock
        self.worker = worker
        self.tz = tz
        self.lease = step_lease_seconds

    # --- complaints ----------------------------------------------------------------

    async def receive(self, items: list[tuple[int, Any]], *, drill: bool = False) -> IntakeResult:
        """Complaints in: store the good ones, check their streams, act on any surge."""
        result = await self.intake.submit(items, drill=drill)
        if result.new:
            observed = await self.monitor.observe(result.new)
            result.late = observed.late
            if observed.late:
                log.warning(
                    "%d of %d complaint(s) came after their bucket was fed to surge detection "
                    "(more than %s late): they count in the streams' totals, not in detection",
                    observed.late, len(result.new), self.monitor.grace,
                )
            await self._surges(observed.found)
        return result

    async def catch_up(self) -> None:
        """Feed every stream's closed buckets to its detector (after loading history, and
        on every tick); surges in the past are recorded, recent ones acted on."""
        await self._surges(await self.monitor.refresh_all())

    async def _surges(self, found: list[Found]) -> None:
        for item in found:
            if item.fresh:
                await self.on_surge(item.surge)
            else:
                await self.store.record_surge(item.surge)
                log.info("surge on %s at %s recorded as history", item.surge.key, item.surge.onset)

    # --- opening -------------------------------------------------------------------

    async def on_surge(self, surge: Surge) -> Incident | None:
        """Record the surge; open the matching playbook's incident, or attach the surge to
        the open incident on its key. No matching playbook: recorded, no incident."""
        await self.store.record_surge(surge)
        match = match_playbook(self.catalog().playbooks.values(), surge)
        if match.playbook is None:
            log.info("surge on %s opens no incident: %s", surge.key, match.reason)
            return None
        setup = await self.drill_setup(surge.key) if surge.drill else None
        params = script_params(match.playbook, setup.params) if setup is not None else {}
        # One event, one incident: the store opens it unless an incident on the key, or
        # on the same event seen through the other stream (a category-wide surge while a
        # regional incident of its category is open, or the reverse), is open already,
        # atomically across instances; the surge then attaches to that one.
        try:
            opened = await self._open(match.playbook, surge.region, params, surge=surge, surge_key=surge.key,
                                      drill=surge.drill, actor="surge-detector", setup=setup, related=True)
        except InvalidAction as exc:  # its templates changed since the check: the surge stays recorded
            log.error("surge on %s opens no incident: %s", surge.key, exc)
            return None
        if not opened.created:
            return await self._attach(opened.incident, surge)
        return opened.incident

    async def trigger(
        self,
        playbook_id: str,
        *,
        region: str,
        params: dict[str, Any] | None = None,
        drill: bool = False,
        severity: str | None = None,
        actor: str = "leader",
        setup: DrillSetup | None = None,
        related: bool = False,
    ) -> Opened:
        """A leader's manual trigger. It takes the surge key of the playbook's first
        category in `region`, so a surge there attaches to it rather than opening
        another; if one is already open there, that one is returned. With `related`
        (a network alarm), so is one open on the same event seen through the other
        stream (the category-wide one for a region, or the reverse), as for a surge."""
        catalog = self.catalog()
        playbook = catalog.playbooks.get(playbook_id)
        if playbook is None:
            raise PlaybookNotFound(playbook_id)
        if region != ALL_REGIONS and region not in catalog.contacts.regions:
            raise InvalidAction(f"unknown region '{region}'")
        if severity is not None and severity not in SEVERITY_ORDER:
            raise InvalidAction(f"unknown severity '{severity}' (one of {', '.join(SEVERITY_ORDER)})")
        filled = script_params(playbook, params or {})
        key = (DRILL_PREFIX if drill else "") + stream_key(playbook.trigger.categories[0], region)
        return await self._open(playbook, region, filled, surge=None, surge_key=key, drill=drill,
                                actor=actor, severity=severity, setup=setup, related=related)

    async def _open(
        self,
        playbook: Playbook,
        region: str,
        params: dict[str, str],
        *,
        surge: Surge | None,
        surge_key: str,
        drill: bool,
        actor: str,
        severity: str | None = None,
        setup: DrillSetup | None = None,
        related: bool = False,
    ) -> Opened:
        now = self.clock.now()
        catalog = self.catalog()
        try:
            load_templates(catalog.templates, playbook)
        except TemplateOutside as exc:
            raise InvalidAction(f"playbook {playbook.id} cannot open an incident: {exc}") from exc
        except TemplateNotFound as exc:
            raise InvalidAction(f"playbook {playbook.id} cannot open an incident: "
                                f"template {exc.name!r} not found in templates/") from exc
        codes = {i.code for i in await self.store.list_incidents(open_only=True)}
        roles = assign_roles(playbook, catalog.contacts, now, self.tz)
        alerts = role_alerts(playbook, roles)  # levels no one can fill, roles with no one
        incident = Incident(
            id=f"{'DRL' if drill else 'INC'}-{now.astimezone(self.tz):%Y%m%d}-{secrets.token_hex(3)}",
            playbook=playbook.id,
            title=playbook.title,
            severity=severity or severity_for(playbook.severity, surge),
            category=surge.category if surge else playbook.trigger.categories[0],
            region=region,
            surge_key=surge_key,
            code=new_code(codes),
            drill=drill,
            drill_run=setup.run_id if setup else None,
            audience_teams=setup.teams if setup else None,
            audience_regions=setup.regions if setup else None,
            opened_at=now,
            opened_by=actor,
            params=params,
            playbook_snapshot=playbook,
            roles=roles,
            surge=surge,
            surge_count=1 if surge else 0,
            alerts=[a.message for a in alerts],
            updated_at=now,
        )
        first = TimelineEvent(
            at=now, kind="opened", actor=actor,
            data={"playbook": playbook.id, "severity": incident.severity, "surge": surge_key,
                  "surge_data": surge.model_dump(mode="json") if surge else None},
        )
        stored, created = await self.store.open_incident(incident, first, related=related)
        if created:
            for role in roles:
                await self.store.append_timeline(stored.id, TimelineEvent(
                    at=now, kind="role_assigned", data={"role": role.role, "person": role.holder,
                                                        "deadline": _iso(role.deadline), "chain": role.chain}))
            for alert in alerts:
                await self.store.append_timeline(stored.id, TimelineEvent(at=now, kind="alert", data=alert.data()))
            log.info("incident %s opened (%s, %s)", stored.id, playbook.id, surge_key)
            await self.updates.announce(stored, [first], "opened")  # webhooks: lifecycle.py
            await self.publication.open_with_wording(stored)
            stored = await self.store.get_incident(stored.id)
        return Opened(stored, created)

    async def _attach(self, incident: Incident, surge: Surge) -> Incident:
        now = self.clock.now()
        return await self.update(incident.id, lambda inc: changes.attach_surge(inc, now, surge))

    # --- the script ----------------------------------------------------------------

    async def draft_and_send(self, incident_id: str, kind: ScriptKind, author: str,
                             params: dict[str, str] | None = None,
                             texts: dict[str, str] | None = None) -> tuple[ScriptVersion, int]:
        """A new version drafted, and sent at once where the playbook allows it; returns
        it and the deliveries created (0: it waits for approval)."""
        return await self.publication.draft_and_send(incident_id, kind, author, params, texts)

    async def approve(self, incident_id: str, version: int, by: str) -> int:
        """A version approved and published; returns the deliveries created."""
        return await self.publication.approve(incident_id, version, by)

    async def remind_now(self, incident_id: str, by: str) -> tuple[int, int]:
        """A leader's "remind now": returns the version and the reminders queued."""
        return await self.notifier.remind_now(incident_id, by)

    # --- acknowledgements ------------------------------------------------------------

    async def acknowledge(self, incident_id: str, version: int, person_id: str, via: str) -> bool:
        return await self.acks.acknowledge(incident_id, version, person_id, via)

    async def acknowledge_link(self, claim: AckClaim) -> bool:
        return await self.acks.acknowledge_link(claim)

    async def check_link(self, claim: AckClaim) -> None:
        await self.acks.check_link(claim)

    async def reply(self, phone: str, body: str) -> Replied:
        """An SMS reply: STOP/START mirrored, or one role or version acknowledged."""
        return await self.acks.reply(phone, body)

    # --- changes -------------------------------------------------------------------

    async def ack_role(self, incident_id: str, person: str, role: str | None = None, via: str = "api") -> Incident:
        """`person` acknowledges `role` (or every role they hold): incident_updates.py."""
        return await self.updates.ack_role(incident_id, person, role, via)

    async def resolve(self, incident_id: str, actor: str, note: str = "") -> Incident:
        now = self.clock.now()
        resolved = await self.update(incident_id, lambda inc: changes.resolve(inc, now, actor, note))
        if resolved.current_script is not None:
            await self.publication.draft_and_send(incident_id, ScriptKind.stand_down, actor)
            resolved = await self.store.get_incident(incident_id)
        return resolved

    async def set_severity(self, incident_id: str, severity: str, actor: str, reason: str = "") -> Incident:
        now = self.clock.now()
        return await self.update(incident_id, lambda inc: changes.set_severity(inc, now, severity, actor, reason))

    async def add_note(self, incident_id: str, actor: str, text: str) -> None:
        await self.store.get_incident(incident_id)
        await self.store.append_timeline(incident_id, TimelineEvent(
            at=self.clock.now(), kind="note", actor=actor, data={"text": text}))

    # --- timers --------------------------------------------------------------------

    async def tick(self) -> list[tuple[str, DueStep]]:
        """Run every step due now on every live incident, each claimed first so that it
        runs once across instances and restarts. Returns what this worker ran."""
        await self.catch_up()
        now = self.clock.now()
        ran: list[tuple[str, DueStep]] = []
        live = [i for i in await self.store.list_incidents() if i.status != IncidentStatus.closed]
        for incident in live:
            playbook = incident.plan
            done = await self.store.finished_steps(incident.id)
            # A publication whose writer died: finished here (unless a live one holds it).
            await self.publication.finish_publishing(incident, done)
            for step in due_steps(incident, playbook, now, done, self.catalog().contacts.most_phones):
                if not await self.store.claim_step(incident.id, step.key, self.worker, now, self.lease):
                    continue
                with log_ids(incident_id=incident.id, drill_run=incident.drill_run):
                    await self._run_step(incident.id, playbook, step)
                await self.store.finish_step(incident.id, step.key)
                ran.append((incident.id, step))
        return ran

    async def _run_step(self, incident_id: str, playbook: Playbook, step: DueStep) -> None:
        now = self.clock.now()
        if step.kind == "escalate":
            assert step.role is not None and step.level is not None
            role, level = step.role, step.level
            escalated = await self.update(incident_id, lambda inc: changes.escalate(inc, now, role, level))
            await self.notifier.notify_roles(escalated, [role], f"level{level}")
        elif step.kind == "role_exhausted":
            message = f"role {step.role}: no one in its escalation chain acknowledged"
            await self.update(incident_id, lambda inc: changes.alert(inc, now, message, step.role))
        elif step.kind == "follow_up":
            await self.update(incident_id, lambda inc: changes.close(inc, now, playbook.follow_up))
        elif step.kind == "next_channel":
            assert step.level is not None
            await self.messages.next_channel(incident_id, step.level)
        elif step.kind in ("audience_reminder", "audience_supervisor"):
            assert step.level is not None
            await self.notifier.chase(incident_id, step.level, supervisors=step.kind == "audience_supervisor")
        elif step.kind == "remind_roles":
            incident = await self.store.get_incident(incident_id)
            await self.notifier.notify_roles(incident, None, "reminder")
            await self.store.append_timeline(incident_id, TimelineEvent(at=now, kind="remind_roles", data={
                "unacknowledged": {r.role: r.holder for r in incident.roles if r.acked_at is None}}))
        elif step.kind == "remind_audience":
            incident = await self.store.get_incident(incident_id)
            if incident.current_script is not None:
                await self.notifier.chase(incident_id, incident.current_script.version, supervisors=False,
                                           purpose=f"reminder-{step.key.replace(':', '')}")
        elif step.kind == "status_update":
            incident = await self.store.get_incident(incident_id)
            if incident.current_script is not None:
                await self.publication.draft_and_send(incident_id, ScriptKind.update, "system")
            else:
                await self.store.append_timeline(incident_id, TimelineEvent(
                    at=now, kind="status_update", data={"occurrence": step.occurrence, "sent": False,
                                                        "reason": "no approved wording yet"}))
        else:
            incident = await self.store.get_incident(incident_id)
            data: dict[str, Any] = {"occurrence": step.occurrence}
            if step.kind == "remind_roles":
                data["unacknowledged"] = {r.role: r.holder for r in incident.roles if r.acked_at is None}
            await self.store.append_timeline(incident_id, TimelineEvent(at=now, kind=step.kind, data=data))
