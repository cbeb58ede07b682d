"""What is due on an incident at `now`: role escalations, the playbook's timed steps and
the follow-up. A pure function of (incident, now, steps already done), so every
instance computes the same list, and the store's step claims make each run once.

Each due step has a stable key; a restart recomputes the same keys, so nothing is lost
and nothing done is done again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .models import Incident, IncidentStatus
from .config.schemas import Playbook

StepKind = Literal[
    "escalate", "role_exhausted", "remind_roles", "remind_audience", "status_update", "follow_up",
    "audience_reminder", "audience_supervisor", "next_channel",
]


@dataclass(frozen=True)
class DueStep:
    key: str
    kind: StepKind
    due_at: datetime
    role: str | None = None
    # escalate: the entry of the role's chain it moves to (its index, kept in the step's
    # key; the playbook's level of that entry, which pages and events show, is
    # roster.playbook_level: a level no one could fill has no entry).
    level: int | None = None
    # A periodic step's occurrence number (1 = the first, `every` after opening).
    occurrence: int | None = None


def due_steps(incident: Incident, playbook: Playbook, now: datetime, done: set[str], phones: int = 1) -> list[DueStep]:
    """Steps due at `now` and not in `done`, oldest first. A periodic step that fell due
    several times while no instance ran (a long restart) is due once, as its latest
    occurrence: a burst of stale status updates helps no one. `phones`: the most phones
    a person has (contacts.most_phones): with channels in turn, each further phone is a
    turn of its own before the channel after SMS."""
    due: list[DueStep] = []
    if incident.is_open:
        for role in incident.roles:
            if role.acked_at is not None or role.deadline is None or role.deadline > now:
                continue
            if role.level + 1 < len(role.chain):
                due.append(DueStep(f"escalate:{role.role}:{role.level + 1}", "escalate", role.deadline,
                                   role=role.role, level=role.level + 1))
            else:
                due.append(DueStep(f"exhausted:{role.role}", "role_exhausted", role.deadline, role=role.role))
        for index, step in enumerate(playbook.steps):
            if step.at is not None:
                at = incident.opened_at + step.at
                if at <= now:
                    due.append(DueStep(f"step:{index}", step.action, at))
            elif step.every is not None:
                occurrence = (now - incident.opened_at) // step.every
                if occurrence >= 1:
                    at = incident.opened_at + occurrence * step.every
                    due.append(DueStep(f"step:{index}:{occurrence}", step.action, at, occurrence=occurrence))
        wording = incident.current_script
        if wording is not None and wording.approved_at is not None:
            # Frontline staff who have not acknowledged the wording in force: a reminder,
            # then their supervisor is told.
            for kind, after in (("audience_reminder", playbook.audience.remind_after),
                                ("audience_supervisor", playbook.audience.supervisor_after)):
                if after is not None and wording.approved_at + after <= now:
                    due.append(DueStep(f"{kind}:{wording.version}", kind, wording.approved_at + after,  # type: ignore[arg-type]
                                       level=wording.version))
            wait = playbook.audience.next_channel_after
            if playbook.audience.in_turn and wait is not None:
                # Those their channel has not reached yet (an SMS without a delivery
                # receipt, a DingTalk card unread): the next channel now, turn by turn
                # (SMS then email: one turn).
                listed = isinstance(playbook.audience.channels, list)
                turns = len(playbook.audience.channel_order) - 1 if listed else 1
                if "sms" in playbook.audience.channel_order:
                    turns += max(phones, 1) - 1  # SMS to the next phone, then the next channel
                for turn in range(1, turns + 1):
                    at = wording.approved_at + turn * wait
                    if at <= now:
                        key = f"next_channel:{wording.version}" + (f":{turn}" if turn > 1 else "")
                        due.append(DueStep(key, "next_channel", at, level=wording.version))
    if incident.status == IncidentStatus.resolved and incident.resolved_at is not None:
        at = incident.resolved_at + playbook.follow_up.after
        if at <= now:
            due.append(DueStep("follow_up", "follow_up", at))
    return sorted((d for d in due if d.key not in done), key=lambda d: (d.due_at, d.key))
