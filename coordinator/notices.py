"""The short messages that are not the official script: a role holder's notice, a
reminder of the wording, a supervisor's list of who has not acknowledged. Rendered from
templates (coordinator/notice_templates/, each with its subject) in a sandbox, like the
scripts, so their wording lives beside the scripts' and not in Python."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .models import Incident
from .replies import code_mark, with_code
from .scripts import DRILL_MARK

if TYPE_CHECKING:
    from .config.catalog import Contacts

_ENV = ImmutableSandboxedEnvironment(loader=FileSystemLoader(Path(__file__).parent / "notice_templates"),
                                     undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class Notice:
    text: str
    """The SMS, and the email's body."""
    subject: str


def _render(name: str, incident: Incident, **context: Any) -> Notice:
    context.update(drill=DRILL_MARK if incident.drill else "", title=incident.title)
    return Notice(text=_ENV.get_template(f"{name}.txt.j2").render(context).strip(),
                  subject=_ENV.get_template(f"{name}_subject.txt.j2").render(context).strip())


def role_notice(incident: Incident, role_title: str, purpose: str, place: str, deadline: str) -> Notice:
    """To a role holder: what they hold (`purpose`: assigned, reminder, or an escalation
    level) and by when (`deadline`, local "HH:MM") to reply 1."""
    notice = _render("role", incident, role_title=role_title, purpose=purpose, place=place, deadline=deadline)
    return Notice(with_code(notice.text, incident.code), notice.subject)


def reminder(incident: Incident, version: int) -> Notice:
    """To a person who has not acknowledged `version`."""
    return _render("reminder", incident, version=version, mark=code_mark(incident.code) if incident.code else "")


def supervisor_notice(incident: Incident, version: int, names: Sequence[str]) -> Notice:
    """To a supervisor: the names of their people who have not acknowledged `version`."""
    return _render("supervisor", incident, version=version, names=list(names),
                   mark=code_mark(incident.code) if incident.code else "")


def place(contacts: Contacts, incident: Incident) -> str:
    """How the incident's region reads in a notice or an answer."""
    region = contacts.regions.get(incident.region)
    return region.name if region is not None else "全省" if incident.region == "*" else incident.region
