"""The official script's templates: one sandboxed Jinja2 environment, and the checks run
on every template at load so a syntax error or an unknown variable is caught before an
incident, not during one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping, Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import TemplateInvalid, TemplateOutside

# Variables every script template may use. The script is byte-identical for every
# recipient, so nothing here is per person (the email's ack link is added outside it).
STANDARD_VARIABLES: dict[str, str] = {
    "incident_id": "incident id, e.g. INC-20261124-0007",
    "title": "the playbook's title",
    "severity": "minor | major | critical",
    "severity_label": "一般 | 较大 | 重大",
    "category": "complaint category id",
    "category_name": "complaint category name",
    "region": "region id of the incident",
    "region_name": "region name",
    "opened_at": "opening time, local, 'YYYY-MM-DD HH:MM'",
    "now": "time of rendering, local, 'YYYY-MM-DD HH:MM'",
    "resolved_at": "resolution time, local (stand-down only; empty before)",
    "version": "script version number (1, 2, ...)",
    "supersedes": "the version this one replaces, or none",
    "drill": "true in a drill: the message must say so",
    "incident_code": "the incident's short code (K7Q) that an SMS reply may name; added to the SMS as 〔事件码K7Q〕 if the template does not place it",
}

TEMPLATE_SUFFIX = ".j2"


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith((".html.j2", ".html"))


def outside(templates_dir: Path, name: str) -> bool:
    """Whether template `name` would be read from outside `templates_dir`: an absolute
    path, a `..` part, or a symlink (the file, or a folder on the way) leading out. A
    name with no file behind it is judged by its spelling alone."""
    if not name or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
        return True
    return not (templates_dir / name).resolve().is_relative_to(templates_dir.resolve())


class _ContainedLoader(FileSystemLoader):
    """Jinja's file loader, reading nothing outside its folder. Its own check stops a
    `..` part only: it would read a symlink leading out, and reads "/etc/passwd" as
    templates/etc/passwd, which `coordinator check` would have looked for elsewhere."""

    def __init__(self, templates_dir: Path) -> None:
        super().__init__(str(templates_dir))
        self.templates_dir = templates_dir

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        if outside(self.templates_dir, template):
            raise TemplateOutside(template)
        return super().get_source(environment, template)


def make_environment(templates_dir: Path) -> ImmutableSandboxedEnvironment:
    """Sandboxed (templates are files an admin edits, still not code we run), strict about
    undefined names, HTML autoescaped for `*.html.j2`, and reading nothing outside
    `templates_dir` (TemplateOutside), whatever a playbook names or a symlink points to."""
    return ImmutableSandboxedEnvironment(
        loader=_ContainedLoader(templates_dir),
        undefined=StrictUndefined,
        autoescape=_autoescape,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    # Each variable the template reads from its context, with the line it is first read on.
    variables: dict[str, int]


def inspect_template(env: ImmutableSandboxedEnvironment, name: str, source: str) -> TemplateInfo:
    """Compile `source` (raising TemplateInvalid on a syntax error) and list its variables."""
    try:
        tree = env.parse(source, name=name)
        env.compile(tree, name=name)
    except TemplateSyntaxError as exc:
        raise TemplateInvalid(name, exc.lineno or 1, f"template syntax error: {exc.message}") from None
    undeclared = meta.find_undeclared_variables(tree)
    lines: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.name in undeclared and node.ctx == "load":
            lines.setdefault(node.name, node.lineno)
    return TemplateInfo(name, lines)


# --- rendering -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    sms: str
    email_subject: str
    email_text: str
    email_html: str

    @property
    def content_hash(self) -> str:
        """SHA-256 over the four texts: equal hashes prove byte-identical wording."""
        digest = hashlib.sha256()
        for part in (self.sms, self.email_subject, self.email_text, self.email_html):
            data = part.encode("utf-8")
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
        return digest.hexdigest()


    def marked_as_drill(self) -> "Rendered":
        """Every text starts with the drill marker, whatever the template did: a drill
        message must never be mistaken for a real one."""
        def mark(text: str) -> str:
            return text if text.lstrip().startswith(DRILL_MARK) else DRILL_MARK + text

        html = self.email_html if DRILL_MARK in self.email_html[:400] else f"<p><strong>{DRILL_MARK}</strong></p>\n{self.email_html}"
        return Rendered(mark(self.sms), mark(self.email_subject), mark(self.email_text), html)


    def with_sms(self, sms: str) -> "Rendered":
        return Rendered(sms, self.email_subject, self.email_text, self.email_html)


DRILL_MARK = "【演练】"


def placeholder(label: str) -> str:
    """What stands in the text for a parameter nobody has given yet."""
    return f"〔待补充：{label}〕"


def render(env: ImmutableSandboxedEnvironment, names: ScriptTemplatesLike, context: dict[str, Any]) -> Rendered:
    """Render one message per channel. The subject is one line; SMS and subject lose
    surrounding whitespace, so an editor's trailing newline does not change a segment
    count or a hash."""

    def one(name: str) -> str:
        return env.get_template(name).render(context)

    return Rendered(
        sms=one(names.sms).strip(),
        email_subject=" ".join(one(names.email_subject).split()),
        email_text=one(names.email_text),
        email_html=one(names.email_html),
    )


class ScriptTemplatesLike(Protocol):
    sms: str
    email_subject: str
    email_text: str
    email_html: str


def fill_params(declared: Mapping[str, ParamLike], given: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Every declared parameter: the given value, else its default, else a visible
    placeholder. Returns the values and the names still missing."""
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, param in declared.items():
        value = given.get(name)
        if value is None or value == "":
            if param.default is not None:
                value = param.default
            elif param.required:
                value = placeholder(param.label)
                missing.append(name)
            else:
                value = ""
        values[name] = value
    return values, missing


class ParamLike(Protocol):
    label: str
    required: bool
    default: str | None
