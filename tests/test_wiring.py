"""The service's parts are built bottom-up with required arguments: no collaborator is
set on a part after it was built (that hid loops Pipeline <-> Frontline <-> Outbox and
Pipeline <-> Drills the imports did not show)."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).parent.parent / "coordinator" / "app.py"


def assigned_attributes(function: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(function):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, ast.Attribute):
                found.append(f"line {node.lineno}: {ast.unparse(target)} = ...")
    return found


def test_build_services_and_create_app_set_nothing_after_construction() -> None:
    tree = ast.parse(APP.read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for name in ("build_services", "create_app"):
        assert assigned_attributes(functions[name]) == [], name


def test_the_check_sees_a_setter() -> None:
    tree = ast.parse("async def build_services():\n    pipeline = P()\n    pipeline.frontline = f\n")
    assert assigned_attributes(tree.body[0]) == ["line 3: pipeline.frontline = ..."]
