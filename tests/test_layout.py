"""The tree stays readable: no module over 400 lines, and docs/architecture.md names
every module and folder of the package, and only those that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "coordinator"
LIMIT = 400


def test_no_module_is_over_400_lines() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 80
    assert {p: n for p, n in sizes.items() if n > LIMIT} == {}


def named_in_architecture() -> set[str]:
    text = (REPO / "docs" / "architecture.md").read_text()
    names: set[str] = set()
    for row in re.findall(r"^\| ([^|]+) \|", text, flags=re.M):
        if row.strip() in ("module", "---"):
            continue
        names.update(name.strip() for name in row.split(","))
    return names


def test_the_architecture_page_names_every_module_that_exists() -> None:
    named = named_in_architecture()
    top = {p.name + ("/" if p.is_dir() else "") for p in PACKAGE.iterdir()
           if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and p.name != "__pycache__")}
    assert top - named == set(), "modules missing from docs/architecture.md"
    assert named - top == set(), "docs/architecture.md names modules that do not exist"
