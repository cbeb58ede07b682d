"""parse_yaml reads plain documents from the parser's events; what it returns must be
exactly what yaml's own composer and safe constructor give (`_parse_tree`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.config.yamlsource import _parse_tree, parse_yaml

REPO = Path(__file__).resolve().parents[1]

CASES = [
    "",
    "a: 1\nb:\n  - x: 1\n  - x: 2\n    x: 3\n",  # a duplicate key
    "1: a\n2020-01-01: d\nyes: no\nf: 1.5\nn: ~\n",  # keys and values of every scalar type
    "- a\n- [1, 2.5, null]\n- {k: v}\n- - - 1\n    - 2\n  - 3\n",
    "a:\n  b:\n    c: |\n      两行\n      文字\n",
    # left to yaml's composer: anchors, tags, complex and merge keys
    "a: &x 1\nb: *x\n",
    "a: !!str 12\nb: !!binary aGVsbG8=\n",
    "? a\n: 1\n",
    "base: &b {a: 1}\nc:\n  <<: *b\n  d: 2\n",
]


@pytest.mark.parametrize("text", CASES)
def test_same_as_the_node_tree(text: str) -> None:
    fast, problems = parse_yaml(text, "f.yaml")
    slow, slow_problems = _parse_tree(text, "f.yaml")
    assert fast is not None and slow is not None
    assert (fast.data, fast.lines, problems) == (slow.data, slow.lines, slow_problems)


@pytest.mark.parametrize("path", sorted(p for d in ("playbooks", "templates", "contacts", "drills")
                                        for p in (REPO / d).rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_config_reads_the_same(path: Path) -> None:
    text = path.read_text("utf-8")
    fast, problems = parse_yaml(text, path.name)
    slow, slow_problems = _parse_tree(text, path.name)
    assert fast is not None and slow is not None
    assert (fast.data, fast.lines, problems) == (slow.data, slow.lines, slow_problems)


@pytest.mark.parametrize("text, line, reason", [
    ("a: [1,\n", 2, "did not find expected node content"),
    ("a: 1\n---\nb: 2\n", 2, "but found another document"),
])
def test_errors_as_before(text: str, line: int, reason: str) -> None:
    doc, problems = parse_yaml(text, "f.yaml")
    assert doc is None
    assert [(p.line, p.message) for p in problems] == [(line, f"YAML syntax error: {reason}")]
