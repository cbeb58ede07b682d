"""Composing a version of the official script for an incident: the context the
templates see, rendering, the hash, the SMS length, and whether it needs approval."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2.sandbox import ImmutableSandboxedEnvironment

from .models import Incident, ScriptKind, ScriptVersion
from .playbooks import SEVERITY_LABELS
from .replies import with_code
from .config.schemas import Playbook
from .scripts import fill_params, render
from .segments import sms_segments


def _local(when: datetime | None, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M") if when else ""


def compose(
    env: ImmutableSandboxedEnvironment,
    playbook: Playbook,
    incident: Incident,
    *,
    kind: ScriptKind,
    params: dict[str, str],
    author: str,
    now: datetime,
    tz: ZoneInfo,
    region_name: str,
    category_name: str,
) -> ScriptVersion:
    """The next version of `kind` for `incident`, not yet approved. A stand-down or an
    update carries the number of the wording it goes with; a new wording supersedes
    the latest one."""
    values, missing = fill_params(playbook.script.params, params)
    latest = incident.scripts[-1].version if incident.scripts else 0
    wording = incident.current_script
    version = latest + 1
    supersedes = wording.version if kind == ScriptKind.script and wording else None
    context: dict[str, Any] = {
        "incident_id": incident.id,
        "title": incident.title,
        "severity": incident.severity,
        "severity_label": SEVERITY_LABELS.get(incident.severity, incident.severity),
        "category": incident.category,
        "category_name": category_name,
        "region": incident.region,
        "region_name": region_name,
        "opened_at": _local(incident.opened_at, tz),
        "now": _local(now, tz),
        "resolved_at": _local(incident.resolved_at or (now if kind == ScriptKind.stand_down else None), tz),
        # Updates and stand-downs speak of the wording in force, not of their own number.
        "version": version if kind == ScriptKind.script else (wording.version if wording else version),
        "supersedes": supersedes,
        "drill": incident.drill,
        "incident_code": incident.code,
        **values,
    }
    templates = {
        ScriptKind.script: playbook.script.templates,
        ScriptKind.update: playbook.script.update,
        ScriptKind.stand_down: playbook.stand_down.templates,
    }[kind]
    rendered = render(env, templates, context)
    if incident.drill:
        rendered = rendered.marked_as_drill()
    rendered = rendered.with_sms(with_code(rendered.sms, incident.code))  # a reply names its incident with it
    encoding, segments, _ = sms_segments(rendered.sms)
    return ScriptVersion(
        version=version,
        kind=kind,
        sms=rendered.sms,
        email_subject=rendered.email_subject,
        email_text=rendered.email_text,
        email_html=rendered.email_html,
        content_hash=rendered.content_hash,
        sms_encoding=encoding,
        sms_segments=segments,
        params=values,
        missing=missing,
        supersedes=supersedes,
        author=author,
        created_at=now,
    )


def load_templates(env: ImmutableSandboxedEnvironment, playbook: Playbook) -> None:
    """Load every template `playbook` names (`env` caches them), ahead of an incident's
    opening: one refused (TemplateOutside) or gone (TemplateNotFound) since the config
    was checked then stops the opening, rather than leaving an incident open with no
    wording."""
    for names in (playbook.script.templates, playbook.script.update, playbook.stand_down.templates):
        for name in names.model_dump().values():
            env.get_template(name)


def needs_approval(playbook: Playbook, version: ScriptVersion) -> bool:
    """`approval: leader` always; `auto` unless a parameter is still missing (a
    placeholder must never reach the frontline)."""
    return playbook.script.approval == "leader" or bool(version.missing)


def sent_at_once(playbook: Playbook, version: ScriptVersion) -> bool:
    """Whether a drafted version goes out without a leader's approval: an update or the
    stand-down always (they follow wording already approved), the official wording as
    `needs_approval` says; never one with a parameter missing."""
    if version.kind != ScriptKind.script:
        return not version.missing
    return not needs_approval(playbook, version)
