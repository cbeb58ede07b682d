"""The config as files: playbooks/, templates/, contacts/, drills/ and categories.yaml,
loaded and checked all at once. Every problem is reported as `path:line: message`;
a catalog is only built when there are none, so a reload builds a complete new catalog
before it is swapped in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ValidationError

from .alerts import AlarmRules, load_alerts
from .webhooks import Webhooks, load_webhooks
from .crosschecks import CrossChecks, Entry as _Entry
from ..errors import ConfigError, TemplateInvalid
from .categories import BUILTIN_CATEGORIES
from .schemas import (
    CategoriesFile,
    DoNotContact,
    Drill,
    Person,
    Playbook,
    Region,
    Rotation,
    Team,
)
from ..scripts import (
    TEMPLATE_SUFFIX,
    TemplateInfo,
    inspect_template,
    make_environment,
    outside,
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

    def by_phone(self, phone: str) -> Person | None:
        """Whose phone this is, among every person's numbers (`coordinator check` makes it one's)."""
        return self._phones.get(phone)

    @cached_property
    def _phones(self) -> dict[str, Person]:
        return {number: p for p in self.people.values() for number in p.numbers}

    @cached_property
    def most_phones(self) -> int:
        """The most phones one person has (at least 1): turns of `channels: in_turn` (escalation.py)."""
        return max((len(p.numbers) for p in self.people.values()), default=1) or 1


@dataclass(frozen=True)
class Catalog:
    root: Path
    playbooks: dict[str, Playbook]
    drills: dict[str, Drill]
    contacts: Contacts
    categories: dict[str, str]
    templates: ImmutableSandboxedEnvironment = field(repr=False)
    # categories.yaml: a category's usual complaints an hour, the detection prior of its
    # streams before they have history.
    typical_per_hour: dict[str, float] = field(default_factory=dict)
    # categories.yaml: a category's usual day (24 relative hourly figures), the prior's time of day.
    typical_day: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # alerts.yaml: network alarms to playbook, region and parameters (config/alerts.py).
    alerts: AlarmRules = field(default_factory=AlarmRules)
    # webhooks.yaml: who is told of lifecycle events, secrets from the environment (config/webhooks.py).
    webhooks: Webhooks = field(default_factory=Webhooks)


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


def validate_doc(model: type[M], doc: YamlDoc) -> tuple[M | None, list[Problem]]:
    """`doc` checked against `model` with the config's wording of schema errors, for
    files kept beside the catalog (users.yaml)."""
    builder = _Builder(Path("."))
    parsed = builder.validate(model, doc.data, doc)
    return parsed, builder.problems


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
        typical: dict[str, float] = {}
        days: dict[str, tuple[float, ...]] = {}
        category_file = self.root / "categories.yaml"
        if category_file.is_file():
            doc = self.read(category_file)
            parsed = self.validate(CategoriesFile, doc.data, doc) if doc else None
            for i, c in enumerate(parsed.categories if parsed else []):
                if c.name is not None:
                    categories[c.id] = c.name
                elif c.id not in BUILTIN_CATEGORIES:
                    assert doc is not None
                    where = format_loc(["categories", i])
                    self.problems.append(doc.problem(("categories", i), f"{where}: missing required field 'name' "
                                                     f"(category '{c.id}' is not built in)"))
                if c.typical_per_hour is not None:
                    typical[c.id] = c.typical_per_hour
                if c.typical_day is not None:
                    days[c.id] = tuple(c.typical_day)

        contacts = self.load_contacts()
        env = make_environment(self.root / "templates")
        templates = self.load_templates(env)
        playbooks = self.load_entries("playbooks", Playbook, "playbook")
        drills = self.load_entries("drills", Drill, "drill")

        checks = CrossChecks(self.root / "templates", self.problems, self.broken)
        checks.contacts(contacts)
        for entry in playbooks.values():
            checks.playbook(entry, contacts, categories, templates)
        for entry in drills.values():
            checks.drill(entry, playbooks, contacts)
        alerts = load_alerts(self, playbooks, contacts["regions"])
        webhooks = load_webhooks(self.root, self, os.environ)

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
            typical_per_hour=typical,
            typical_day=days,
            alerts=alerts,
            webhooks=webhooks,
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
            if outside(directory, name):
                self.problems.append(Problem(self.rel(path), 1, "leads outside templates/ by a symlink (not read)"))
                continue
            try:
                infos[name] = inspect_template(env, name, path.read_text(encoding="utf-8"))
            except TemplateInvalid as exc:
                self.problems.append(Problem(self.rel(path), exc.line, exc.message))
            except UnicodeDecodeError as exc:
                self.problems.append(Problem(self.rel(path), 1, f"not UTF-8 text: {exc.reason}"))
        return infos

