"""Checks between config files, once each file passed its own schema: a playbook naming
a team, rotation, person, template, role or region that does not exist, or a template
outside templates/; a drill naming a missing playbook or parameter; people naming
unknown teams or supervisors. Every problem is reported where the reference stands, as
`path:line: message`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import TemplateOutside
from .schemas import Assignee, DoNotContact, Drill, Person, Playbook, Rotation, ScriptTemplates
from ..scripts import STANDARD_VARIABLES, TemplateInfo, outside
from .yamlsource import PathKey, Problem, YamlDoc, format_loc

Sections = dict[str, dict[str, "Entry"]]


@dataclass
class Entry:
    """A validated object and where it came from, for cross-check messages."""

    model: Any
    doc: YamlDoc
    loc: PathKey

    def problem(self, sub: Iterable[str | int], message: str) -> Problem:
        return self.doc.problem(self.loc + tuple(sub), message)

    def at(self, sub: tuple[str | int, ...], message: str) -> Problem:
        """A problem with a field, named by its path: `roles[0].assign.team: ...`."""
        return self.problem(sub, f"{format_loc(self.loc + sub)}: {message}")



class CrossChecks:
    def __init__(self, template_dir: Path, problems: list[Problem], broken: set[str]) -> None:
        self.template_dir = template_dir
        self.problems = problems
        # Ids of entries that failed their own schema: already reported, so a reference
        # to one is not reported again as unknown.
        self.broken = broken

    def unknown(self, ref: str, known: dict[str, Entry]) -> bool:
        return ref not in known and ref not in self.broken

    def contacts(self, c: Sections) -> None:
        regions, teams, people = c["regions"], c["teams"], c["people"]
        phones: dict[str, Entry] = {}
        userids: dict[tuple[str, str], Entry] = {}
        for entry in people.values():
            person: Person = entry.model
            if self.unknown(person.region, regions):
                self.problems.append(entry.problem(("region",), f"person {person.id}: unknown region '{person.region}'"))
            for i, team in enumerate(person.teams):
                if self.unknown(team, teams):
                    self.problems.append(entry.problem(("teams", i), f"person {person.id}: unknown team '{team}'"))
            if person.supervisor is not None and self.unknown(person.supervisor, people):
                self.problems.append(
                    entry.problem(("supervisor",), f"person {person.id}: unknown supervisor '{person.supervisor}'")
                )
            for i, phone in enumerate(person.numbers):  # a reply must name one person
                where: tuple[str | int, ...] = ("phones", i) if person.phones else ("phone",)
                if phone in phones and phones[phone] is entry:
                    self.problems.append(entry.problem(where, f"person {person.id}: phone {phone} is listed twice"))
                elif phone in phones:
                    other = phones[phone].model.id
                    self.problems.append(entry.problem(where, f"person {person.id}: phone {phone} is also {other}'s"))
                phones[phone] = entry
            for field in ("dingtalk_userid", "wecom_userid"):  # a press must name one person
                userid = getattr(person, field)
                if userid is not None and (field, userid.lower()) in userids:
                    other = userids[(field, userid.lower())].model.id
                    self.problems.append(entry.problem((field,), f"person {person.id}: {field} {userid} is also "
                                                                 f"{other}'s"))
                elif userid is not None:
                    userids[(field, userid.lower())] = entry
        for entry in c["rotations"].values():
            rotation: Rotation = entry.model
            for i, member in enumerate(rotation.members):
                if self.unknown(member, people):
                    self.problems.append(
                        entry.problem(("members", i), f"rotation {rotation.id}: unknown person '{member}'")
                    )
            for i, override in enumerate(rotation.overrides):
                if self.unknown(override.person, people):
                    self.problems.append(
                        entry.problem(
                            ("overrides", i, "person"), f"rotation {rotation.id}: unknown person '{override.person}'"
                        )
                    )
        for entry in c["do_not_contact"].values():
            dnc: DoNotContact = entry.model
            if dnc.person is not None and self.unknown(dnc.person, people):
                self.problems.append(entry.problem(("person",), f"do-not-contact: unknown person '{dnc.person}'"))

    def assignee(
        self, entry: Entry, loc: PathKey, who: Assignee, c: dict[str, dict[str, Entry]]
    ) -> None:
        if who.team is not None:
            if self.unknown(who.team, c["teams"]):
                self.problems.append(entry.at(loc + ("team",), f"unknown team '{who.team}'"))
            elif who.position is not None and not any(
                who.team in e.model.teams and e.model.position == who.position for e in c["people"].values()
            ):
                self.problems.append(
                    entry.at(loc + ("position",), f"no member of team '{who.team}' has position '{who.position}'")
                )
            elif not any(who.team in e.model.teams for e in c["people"].values()):
                self.problems.append(entry.at(loc + ("team",), f"team '{who.team}' has no members"))
        if who.rotation is not None and self.unknown(who.rotation, c["rotations"]):
            self.problems.append(entry.at(loc + ("rotation",), f"unknown rotation '{who.rotation}'"))
        if who.person is not None and self.unknown(who.person, c["people"]):
            self.problems.append(entry.at(loc + ("person",), f"unknown person '{who.person}'"))

    def playbook(
        self,
        entry: Entry,
        c: dict[str, dict[str, Entry]],
        categories: dict[str, str],
        templates: dict[str, TemplateInfo],
    ) -> None:
        pb: Playbook = entry.model
        for i, category in enumerate(pb.trigger.categories):
            if category not in categories:
                self.problems.append(entry.at(("trigger", "categories", i), f"unknown category '{category}'"))
        for i, region in enumerate(pb.trigger.regions or []):
            if self.unknown(region, c["regions"]):
                self.problems.append(entry.at(("trigger", "regions", i), f"unknown region '{region}'"))
        role_ids: set[str] = set()
        for i, role in enumerate(pb.roles):
            if role.id in role_ids:
                self.problems.append(entry.at(("roles", i, "id"), f"duplicate role '{role.id}'"))
            role_ids.add(role.id)
            self.assignee(entry, ("roles", i, "assign"), role.assign, c)
            for j, backup in enumerate(role.escalation):
                self.assignee(entry, ("roles", i, "escalation", j), backup, c)
        for i, team in enumerate(pb.audience.teams):
            if self.unknown(team, c["teams"]):
                self.problems.append(entry.at(("audience", "teams", i), f"unknown audience team '{team}'"))
            elif c["teams"][team].model.kind != "frontline":
                self.problems.append(
                    entry.at(("audience", "teams", i), f"audience team '{team}' is not a frontline team")
                )
        if isinstance(pb.audience.regions, list):
            for i, region in enumerate(pb.audience.regions):
                if region not in c["regions"]:
                    self.problems.append(entry.at(("audience", "regions", i), f"unknown region '{region}'"))
        for i, role_id in enumerate(pb.follow_up.notify_roles):
            if role_id not in role_ids:
                self.problems.append(
                    entry.at(("follow_up", "notify_roles", i), f"unknown role '{role_id}' (not in roles)")
                )
        allowed = set(STANDARD_VARIABLES) | set(pb.script.params)
        for loc, names in (
            (("script", "templates"), pb.script.templates),
            (("script", "update"), pb.script.update),
            (("stand_down", "templates"), pb.stand_down.templates),
        ):
            self.templates(entry, loc, names, templates, allowed)

    def templates(
        self,
        entry: Entry,
        loc: PathKey,
        names: ScriptTemplates,
        templates: dict[str, TemplateInfo],
        allowed: set[str],
    ) -> None:
        pb_id = entry.model.id
        template_dir = self.template_dir
        for channel, name in names.model_dump().items():
            if outside(template_dir, name):  # never looked up, nor read by the renderer
                self.problems.append(entry.at(loc + (channel,), str(TemplateOutside(name))))
                continue
            info = templates.get(name)
            if info is None:
                if not (template_dir / name).is_file():
                    self.problems.append(entry.at(loc + (channel,), f"template '{name}' not found in templates/"))
                continue  # a file that exists but failed to compile is reported on its own
            for variable, line in sorted(info.variables.items()):
                if variable not in allowed:
                    self.problems.append(
                        Problem(
                            f"templates/{name}",
                            line,
                            f"unknown variable '{variable}' (playbook {pb_id} gives the standard "
                            f"variables and its params: {', '.join(sorted(entry.model.script.params)) or 'none'})",
                        )
                    )

    def drill(
        self, entry: Entry, playbooks: dict[str, Entry], c: dict[str, dict[str, Entry]]
    ) -> None:
        drill: Drill = entry.model
        scenario = drill.scenario
        pb_entry = playbooks.get(scenario.playbook)
        if pb_entry is None:
            if scenario.playbook in self.broken:
                return
            self.problems.append(entry.at(("scenario", "playbook"), f"unknown playbook '{scenario.playbook}'"))
            return
        pb: Playbook = pb_entry.model
        if self.unknown(scenario.region, c["regions"]):
            self.problems.append(entry.at(("scenario", "region"), f"unknown region '{scenario.region}'"))
        if scenario.kind == "surge" and scenario.category not in pb.trigger.categories:
            self.problems.append(
                entry.at(
                    ("scenario", "category"),
                    f"category '{scenario.category}' does not trigger playbook {pb.id} "
                    f"(its categories: {', '.join(pb.trigger.categories)})",
                )
            )
        for name in scenario.params:
            if name not in pb.script.params:
                self.problems.append(
                    entry.at(("scenario", "params", name), f"playbook {pb.id} has no parameter '{name}'")
                )
        for name, param in pb.script.params.items():
            if param.required and param.default is None and name not in scenario.params:
                self.problems.append(
                    entry.at(("scenario", "params"), f"missing parameter '{name}' required by playbook {pb.id}")
                )
        if drill.audience is not None:
            for i, team in enumerate(drill.audience.teams or []):
                if team not in pb.audience.teams:
                    self.problems.append(
                        entry.at(
                            ("audience", "teams", i),
                            f"team '{team}' is not in playbook {pb.id}'s audience "
                            f"({', '.join(pb.audience.teams)})",
                        )
                    )
            for i, region in enumerate(drill.audience.regions or []):
                if region not in c["regions"]:
                    self.problems.append(entry.at(("audience", "regions", i), f"unknown region '{region}'"))
