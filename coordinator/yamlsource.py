"""YAML files read with the line of every key and item, so that a problem found later
(by a schema or a cross-check) can be reported as `path:line: message`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

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
    # One pass: the node tree gives the lines, and the data is built from the same tree.
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(path, line, f"YAML syntax error: {reason}")]
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
