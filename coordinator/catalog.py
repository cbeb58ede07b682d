"""The config as files: playbooks/, templates/, contacts/, drills/ and categories.yaml,
loaded and checked all at once. Every problem is reported as `path:line: message`;
a catalog is only built when there are none, so a reload builds a complete new catalog
before it is swapped in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TypeVar

from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ValidationError

from .errors import ConfigError
from .models import BUILTIN_CATEGORIES
from .schemas import (
    Assignee,
    CategoriesFile,
    DoNotContact,
    Drill,
    Person,
    Playbook,
    Region,
    Rotation,
    ScriptTemplates,
    Team,
)
from .scripts import (
    STANDARD_VARIABLES,
    TEMPLATE_SUFFIX,
    TemplateInfo,
    TemplateInvalid,
    inspect_template,
    make_environment,
)
from .yamlsource import PathKey, Problem, YamlDoc, format_loc, parse_yaml

M = TypeVar("M", bound=BaseModel)

_CONTACT_SECTIONS: dict[str, type[BaseModel]] = {
    "regions": Region,
    "teams": Team,
    "people": Person,
    "rotations": Rotation,
    "do_not_contact": DoNotContact,
}

# Friendlier words for the schema's string patterns.
_PATTERN_WORDS = {
    "^[a-z0-9][a-z0-9_-]{0,63}$": "must be a lowercase id (a-z, 0-9, '-', '_'; at most 64)",
    "^\\+[1-9]\\d{6,14}$": "must be a phone number in E.164 form, e.g. +8613800000000",
    "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$": "must be an email address",
}


@dataclass(frozen=True)
class Contacts:
    regions: dict[str, Region]
    teams: dict[str, Team]
    people: dict[str, Person]
    rotations: dict[str, Rotation]
    do_not_contact: tuple[DoNotContact, ...]

    def members(self, team_id: str, position: str | None = None) -> list[Person]:
        return [
            p
            for p in self.people.values()
            if team_id in p.teams and (position is None or p.position == position)
        ]


@dataclass(frozen=True)
class Catalog:
    root: Path
    playbooks: dict[str, Playbook]
    drills: dict[str, Drill]
    contacts: Contacts
    categories: dict[str, str]
    templates: ImmutableSandboxedEnvironment = field(repr=False)


def load_catalog(root: Path | str) -> Catalog:
    """Load and check the config under `root`; raises ConfigError listing every problem."""
    builder = _Builder(Path(root))
    catalog = builder.build()
    if builder.problems or catalog is None:
        raise ConfigError([str(p) for p in sorted(set(builder.problems))])
    return catalog


def check_config(root: Path | str) -> list[str]:
    """Every problem in the config under `root`, as `path:line: message`, in file order."""
    try:
        load_catalog(root)
    except ConfigError as exc:
        return exc.problems
    return []


@dataclass
class _Entry:
    """A validated object and where it came from, for cross-check messages."""

    model: Any
    doc: YamlDoc
    loc: PathKey

    def problem(self, sub: Iterable[str | int], message: str) -> Problem:
        return self.doc.problem(self.loc + tuple(sub), message)

    def at(self, sub: tuple[str | int, ...], message: str) -> Problem:
        """A problem with a field, named by its path: `roles[0].assign.team: ...`."""
        return self.problem(sub, f"{format_loc(self.loc + sub)}: {message}")


class _Builder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        # Ids of entries that failed their own schema check: already reported, so a
        # reference to one is not reported again as unknown.
        self.broken: set[str] = set()

    # --- reading -------------------------------------------------------------------

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def yaml_files(self, folder: str, required: bool) -> list[Path]:
        directory = self.root / folder
        if not directory.is_dir():
            if required:
                self.problems.append(Problem(folder + "/", 1, f"missing directory {folder}/"))
            return []
        return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())

    def read(self, path: Path) -> YamlDoc | None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            self.problems.append(Problem(self.rel(path), 1, f"not UTF-8 text: {exc.reason}"))
            return None
        doc, problems = parse_yaml(text, self.rel(path))
        self.problems.extend(problems)
        if doc is not None and not isinstance(doc.data, dict):
            self.problems.append(Problem(doc.path, 1, "expected a mapping at the top of the file"))
            return None
        return doc

    def validate(self, model: type[M], data: Any, doc: YamlDoc, loc: PathKey = ()) -> M | None:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                self.problems.append(self.schema_problem(doc, loc + tuple(err["loc"]), err))
            return None

    def schema_problem(self, doc: YamlDoc, loc: PathKey, err: Any) -> Problem:
        # Keep only the parts of the location that are keys in the file (pydantic adds a
        # union's tag, for example), and name the field a missing/unknown key is about.
        kept: list[str | int] = []
        for part in loc:
            if tuple(kept) + (part,) in doc.lines:
                kept.append(part)
        kind = err["type"]
        where = format_loc(kept)
        prefix = f"{where}: " if where else ""
        if kind == "missing":
            field_name = loc[-1]
            parent = format_loc(kept)
            return doc.problem(kept, f"{parent + ': ' if parent else ''}missing required field '{field_name}'")
        if kind == "extra_forbidden":
            parent = format_loc(kept[:-1])
            return doc.problem(kept, f"{parent + ': ' if parent else ''}unknown field '{loc[-1]}'")
        message = str(err["msg"]).removeprefix("Value error, ")
        pattern = (err.get("ctx") or {}).get("pattern")
        if kind == "string_pattern_mismatch" and pattern in _PATTERN_WORDS:
            message = f"{_PATTERN_WORDS[pattern]}, got {err['input']!r}"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx") or {}
            tag_field = str(ctx.get("discriminator", "kind")).strip("'")
            return doc.problem(
                kept + [tag_field],
                f"{format_loc(kept + [tag_field])}: unknown {tag_field} {ctx.get('tag')!r} "
                f"(expected one of {ctx.get('expected_tags')})",
            )
        elif kind in ("literal_error", "enum"):
            message = f"{message}, got {err['input']!r}"
        return doc.problem(kept, prefix + message)

    # --- building ------------------------------------------------------------------

    def build(self) -> Catalog | None:
        categories = dict(BUILTIN_CATEGORIES)
        category_file = self.root / "categories.yaml"
        if category_file.is_file():
            doc = self.read(category_file)
            parsed = self.validate(CategoriesFile, doc.data, doc) if doc else None
            for c in parsed.categories if parsed else []:
                categories[c.id] = c.name

        contacts = self.load_contacts()
        env = make_environment(self.root / "templates")
        templates = self.load_templates(env)
        playbooks = self.load_entries("playbooks", Playbook, "playbook")
        drills = self.load_entries("drills", Drill, "drill")

        self.check_contacts(contacts)
        for entry in playbooks.values():
            self.check_playbook(entry, contacts, categories, templates)
        for entry in drills.values():
            self.check_drill(entry, playbooks, contacts)

        if self.problems:
            return None
        return Catalog(
            root=self.root,
            playbooks={k: e.model for k, e in playbooks.items()},
            drills={k: e.model for k, e in drills.items()},
            contacts=Contacts(
                regions={k: e.model for k, e in contacts["regions"].items()},
                teams={k: e.model for k, e in contacts["teams"].items()},
                people={k: e.model for k, e in contacts["people"].items()},
                rotations={k: e.model for k, e in contacts["rotations"].items()},
                do_not_contact=tuple(e.model for e in contacts["do_not_contact"].values()),
            ),
            categories=categories,
            templates=env,
        )

    def load_entries(self, folder: str, model: type[M], noun: str) -> dict[str, _Entry]:
        entries: dict[str, _Entry] = {}
        for path in self.yaml_files(folder, required=True):
            doc = self.read(path)
            if doc is None:
                self.broken.add(path.stem)  # unreadable: its id is most likely its name
                continue
            obj = self.validate(model, doc.data, doc)
            if obj is None:
                self.remember_broken(doc.data)
                continue
            self.add_unique(entries, getattr(obj, "id"), _Entry(obj, doc, ()), noun)
        return entries

    def unknown(self, ref: str, known: dict[str, _Entry]) -> bool:
        return ref not in known and ref not in self.broken

    def remember_broken(self, data: Any) -> None:
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            self.broken.add(data["id"])

    def add_unique(self, into: dict[str, _Entry], key: str, entry: _Entry, noun: str) -> None:
        if key in into:
            first = into[key]
            self.problems.append(
                entry.problem(
                    ("id",),
                    f"duplicate {noun} id '{key}' (first at {first.doc.path}:{first.doc.line_of(first.loc + ('id',))})",
                )
            )
            return
        into[key] = entry

    def load_contacts(self) -> dict[str, dict[str, _Entry]]:
        sections: dict[str, dict[str, _Entry]] = {name: {} for name in _CONTACT_SECTIONS}
        for path in self.yaml_files("contacts", required=True):
            doc = self.read(path)
            if doc is None:
                continue
            for section, raw_items in doc.data.items():
                if section not in _CONTACT_SECTIONS:
                    self.problems.append(
                        doc.problem((section,), f"unknown section '{section}' (expected {', '.join(sections)})")
                    )
                    continue
                if not isinstance(raw_items, list):
                    self.problems.append(doc.problem((section,), f"{section}: expected a list"))
                    continue
                # Item by item, so one bad person does not take the rest of the file with it.
                for index, raw in enumerate(raw_items):
                    item = self.validate(_CONTACT_SECTIONS[section], raw, doc, (section, index))
                    if item is None:
                        self.remember_broken(raw)
                        continue
                    key = getattr(item, "id", None) or f"{doc.path}#{index}"
                    noun = section.rstrip("s").replace("_", "-")
                    self.add_unique(sections[section], key, _Entry(item, doc, (section, index)), noun)
        return sections

    def load_templates(self, env: ImmutableSandboxedEnvironment) -> dict[str, TemplateInfo]:
        infos: dict[str, TemplateInfo] = {}
        directory = self.root / "templates"
        if not directory.is_dir():
            self.problems.append(Problem("templates/", 1, "missing directory templates/"))
            return infos
        for path in sorted(directory.rglob("*" + TEMPLATE_SUFFIX)):
            name = path.relative_to(directory).as_posix()
            try:
                infos[name] = inspect_template(env, name, path.read_text(encoding="utf-8"))
            except TemplateInvalid as exc:
                self.problems.append(Problem(self.rel(path), exc.line, exc.message))
            except UnicodeDecodeError as exc:
                self.problems.append(Problem(self.rel(path), 1, f"not UTF-8 text: {exc.reason}"))
        return infos

    # --- cross-checks --------------------------------------------------------------

    def check_contacts(self, c: dict[str, dict[str, _Entry]]) -> None:
        regions, teams, people = c["regions"], c["teams"], c["people"]
        phones: dict[str, _Entry] = {}
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
            if person.phone is not None:
                if person.phone in phones:
                    other = phones[person.phone].model.id
                    self.problems.append(
                        entry.problem(("phone",), f"person {person.id}: phone {person.phone} is also {other}'s")
                    )
                phones[person.phone] = entry
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

    def check_assignee(
        self, entry: _Entry, loc: PathKey, who: Assignee, c: dict[str, dict[str, _Entry]]
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

    def check_playbook(
        self,
        entry: _Entry,
        c: dict[str, dict[str, _Entry]],
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
            self.check_assignee(entry, ("roles", i, "assign"), role.assign, c)
            for j, backup in enumerate(role.escalation):
                self.check_assignee(entry, ("roles", i, "escalation", j), backup, c)
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
            self.check_templates(entry, loc, names, templates, allowed)

    def check_templates(
        self,
        entry: _Entry,
        loc: PathKey,
        names: ScriptTemplates,
        templates: dict[str, TemplateInfo],
        allowed: set[str],
    ) -> None:
        pb_id = entry.model.id
        template_dir = self.root / "templates"
        for channel, name in names.model_dump().items():
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

    def check_drill(
        self, entry: _Entry, playbooks: dict[str, _Entry], c: dict[str, dict[str, _Entry]]
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
