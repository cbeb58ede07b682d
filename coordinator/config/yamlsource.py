"""YAML files read with the line of every key and item, so that a problem found later
(by a schema or a cross-check) can be reported as `path:line: message`."""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol, TypeVar

import yaml
from pydantic import BaseModel

from ..errors import UnusualYaml

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class YamlDoc:
    """One parsed file: its data, and the line of every mapping key and sequence item."""

    path: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, loc: Iterable[str | int]) -> int:
        """Line of the deepest part of `loc` that exists in the file. Parts that are not
        keys (a union's tag inserted by the schema, say) are skipped."""
        found: PathKey = ()
        best = self.lines.get((), 1)
        for part in loc:
            candidate = found + (part if isinstance(part, int) else str(part),)
            if candidate in self.lines:
                found = candidate
                best = self.lines[candidate]
        return best

    def problem(self, loc: Iterable[str | int], message: str) -> Problem:
        return Problem(self.path, self.line_of(loc), message)


# libyaml's C parser where installed (a roster of thousands parses several times faster).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str, path: str) -> tuple[YamlDoc | None, list[Problem]]:
    """Parse `text`; returns the document (None on a syntax error) and any problems
    (a syntax error, or keys repeated in one mapping, which plain YAML silently drops)."""
    try:
        try:
            return _parse_events(text, path)
        except UnusualYaml:
            return _parse_tree(text, path)  # anchors, tags, complex keys: yaml's composer
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(path, line, f"YAML syntax error: {reason}")]


_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


def _parse_events(text: str, path: str) -> tuple[YamlDoc | None, list[Problem]]:
    """Data and lines built straight from the parser's events, one pass, the same as
    yaml's composer and safe constructor would give for plain documents (mappings with
    scalar keys, sequences, scalars). Never holding the whole node tree (two marks per
    node) keeps the peak low: for a roster of 10,000 people the tree took ~50 MB, which
    the allocator then kept, fragmented, for the life of the service."""
    loader = _Loader(text)
    doc = YamlDoc(path, None)
    problems: list[Problem] = []
    try:
        # Each open collection: [container, its path, pending key (mappings), keys seen].
        stack: list[list[Any]] = []
        started = ended = False
        while True:
            event = loader.get_event()
            if isinstance(event, yaml.StreamEndEvent):
                break
            if isinstance(event, yaml.DocumentStartEvent):
                if started:
                    raise UnusualYaml()  # a second document: the composer's error
                started = True
                continue
            if isinstance(event, (yaml.StreamStartEvent, yaml.DocumentEndEvent)):
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                stack.pop()
                continue
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise UnusualYaml()
            # A node starts: where it goes.
            line = event.start_mark.line + 1
            here: PathKey
            if not stack:
                if ended:
                    raise UnusualYaml()
                here = ()
                doc.lines[()] = line
            else:
                frame = stack[-1]
                container = frame[0]
                if isinstance(container, list):
                    here = frame[1] + (len(container),)
                    doc.lines[here] = line
                elif frame[2] is _NO_KEY:  # a key
                    if not isinstance(event, yaml.ScalarEvent):
                        raise UnusualYaml()
                    key = _scalar(loader, event)
                    if _resolved(loader, event) == "tag:yaml.org,2002:merge":
                        raise UnusualYaml()
                    name = str(event.value)
                    if name in frame[3]:
                        problems.append(Problem(path, line, f"duplicate key '{name}'"))
                    frame[3].add(name)
                    doc.lines[frame[1] + (name,)] = line
                    try:
                        hash(key)
                    except TypeError:
                        raise UnusualYaml() from None
                    frame[2] = (key, name)
                    continue
                else:
                    here = frame[1] + (frame[2][1],)
            value: Any
            if isinstance(event, yaml.ScalarEvent):
                value = _scalar(loader, event)
            elif isinstance(event, yaml.MappingStartEvent):
                if event.tag not in (None, "!", _MAP):
                    raise UnusualYaml()
                value = {}
            elif isinstance(event, yaml.SequenceStartEvent):
                if event.tag not in (None, "!", _SEQ):
                    raise UnusualYaml()
                value = []
            else:
                raise UnusualYaml()
            if not stack:
                doc.data = value
                ended = True
            else:
                frame = stack[-1]
                if isinstance(frame[0], list):
                    frame[0].append(value)
                else:
                    frame[0][frame[2][0]] = value
                    frame[2] = _NO_KEY
            if isinstance(value, dict):
                stack.append([value, here, _NO_KEY, set()])
            elif isinstance(value, list) and not isinstance(event, yaml.ScalarEvent):
                stack.append([value, here, None, None])
    finally:
        loader.dispose()
    return doc, problems


_NO_KEY: Any = object()


def _resolved(loader: Any, event: Any) -> str:
    tag = event.tag
    if tag is None or tag == "!":
        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
    return str(tag)


def _scalar(loader: Any, event: Any) -> Any:
    """What the safe constructor makes of a scalar (str, int, float, bool, None, dates)."""
    tag = _resolved(loader, event)
    construct = loader.yaml_constructors.get(tag)
    if construct is None:
        raise UnusualYaml()
    value = construct(loader, yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style))
    if isinstance(value, types.GeneratorType):
        raise UnusualYaml()
    return value


def _parse_tree(text: str, path: str) -> tuple[YamlDoc | None, list[Problem]]:
    # One pass: the node tree gives the lines, and the data is built from the same tree.
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    doc = YamlDoc(path, data)
    problems: list[Problem] = []
    if node is not None:
        doc.lines[()] = node.start_mark.line + 1
        _walk(node, (), doc, problems)
    return doc, problems


def _walk(node: yaml.Node, here: PathKey, doc: YamlDoc, problems: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(Problem(doc.path, line, f"duplicate key '{key}'"))
            seen.add(key)
            doc.lines[here + (key,)] = line
            _walk(value_node, here + (key,), doc, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            doc.lines[here + (index,)] = item.start_mark.line + 1
            _walk(item, here + (index,), doc, problems)


def format_loc(loc: Iterable[str | int]) -> str:
    """`('roles', 0, 'ack_within')` -> `roles[0].ack_within`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


M = TypeVar("M", bound=BaseModel)


class Reader(Protocol):
    """What the catalog's builder lends to a file loaded beside it (webhooks.yaml,
    alerts.yaml): reading a file with its lines, schema checks worded as the config's,
    and the list every problem goes to."""

    root: Path
    problems: list[Problem]
    broken: set[str]  # ids whose own schema check failed (a reference to one is not reported again)

    def read(self, path: Path) -> YamlDoc | None: ...

    def validate(self, model: type[M], data: Any, doc: YamlDoc, loc: tuple[str | int, ...] = ()) -> M | None: ...
