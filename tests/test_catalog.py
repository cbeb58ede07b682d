"""`coordinator check`: the shipped samples pass, every bad fixture fails with its exact
message. A bad fixture is a folder of files laid over tests/fixtures/good, with the
expected output in expected.txt."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from coordinator.config.catalog import check_config, load_catalog
from coordinator.errors import ConfigError
from coordinator.config.schemas import format_duration, parse_duration
from coordinator.config.yamlsource import parse_yaml

from .conftest import REPO

FIXTURES = Path(__file__).parent / "fixtures"
BAD = sorted(p.name for p in (FIXTURES / "bad").iterdir() if p.is_dir())


def overlay(case: str, into: Path) -> Path:
    target = into / case
    shutil.copytree(FIXTURES / "good", target)
    shutil.copytree(FIXTURES / "bad" / case, target, dirs_exist_ok=True)
    (target / "expected.txt").unlink()
    return target


def test_shipped_samples_pass() -> None:
    assert check_config(REPO) == []
    catalog = load_catalog(REPO)
    assert len(catalog.playbooks) >= 5
    assert len(catalog.drills) >= 2
    assert len(catalog.contacts.people) >= 50
    assert len(catalog.contacts.regions) >= 3


def test_good_fixture_loads() -> None:
    catalog = load_catalog(FIXTURES / "good")
    assert list(catalog.playbooks) == ["outage"]
    playbook = catalog.playbooks["outage"]
    assert playbook.roles[0].ack_within == timedelta(minutes=10)
    assert [p.id for p in catalog.contacts.members("leadership", "客服部经理")] == ["p1"]
    assert catalog.drills["weekly"].timezone == "Asia/Shanghai"
    assert "outage" in catalog.categories and "broadband" in catalog.categories


@pytest.mark.parametrize("case", BAD)
def test_bad_fixture_reports_its_message(case: str, tmp_path: Path) -> None:
    expected = (FIXTURES / "bad" / case / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert expected, f"{case}/expected.txt is empty"
    assert check_config(overlay(case, tmp_path)) == expected


def test_load_catalog_raises_with_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_catalog(overlay("person_unknown_refs", tmp_path))
    assert len(caught.value.problems) == 2


def test_missing_directories_are_reported(tmp_path: Path) -> None:
    assert check_config(tmp_path) == [
        "contacts/:1: missing directory contacts/",
        "drills/:1: missing directory drills/",
        "playbooks/:1: missing directory playbooks/",
        "templates/:1: missing directory templates/",
    ]


def test_cli_check_exit_codes(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "coordinator.commands.cli", "check", str(FIXTURES / "good")], capture_output=True, text=True
    )
    assert ok.returncode == 0 and ok.stdout == ""
    bad = subprocess.run(
        [sys.executable, "-m", "coordinator.commands.cli", "check", str(overlay("unknown_team", tmp_path))],
        capture_output=True, text=True,
    )
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == ["playbooks/outage.yaml:14: roles[0].assign.team: unknown team 'leaders'"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "5 m", "m", "1.5h", "-5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_yaml_lines_and_duplicates() -> None:
    doc, problems = parse_yaml("a: 1\nb:\n  - x: 1\n  - x: 2\n    x: 3\n", "f.yaml")
    assert doc is not None
    assert doc.line_of(("b", 1)) == 4
    assert doc.line_of(("b", 1, "x")) == 5  # the repeated key holds the value YAML kept
    assert doc.line_of(("b", 0, "missing", "deeper")) == 3
    assert [str(p) for p in problems] == ["f.yaml:5: duplicate key 'x'"]
