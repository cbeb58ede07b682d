"""The `coordinator detect INPUT.csv` contract."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from coordinator.commands.detect import run
from coordinator.errors import DetectInputError

START = datetime(2015, 2, 26, 21, 42, 53)  # NAB's timestamp style
DAY = 288


def write_stream(path: Path, days: int = 4, surge_at: int | None = None, seed: int = 1) -> Path:
    rng = random.Random(seed)
    lines = ["timestamp,value"]
    for i in range(days * DAY):
        mean = 8.0 * (1.0 + 0.5 * math.sin(2 * math.pi * i / DAY))
        if surge_at is not None and surge_at <= i < surge_at + 24:
            mean *= 6
        count = sum(1 for _ in range(int(4 * mean)) if rng.random() < 0.25)  # binomial ~ mean
        lines.append(f"{START + timedelta(minutes=5 * i):%Y-%m-%d %H:%M:%S},{count}")
    path.write_text("\n".join(lines) + "\n")
    return path


def detect(path: Path) -> list[dict[str, str]]:
    out = io.StringIO()
    run(str(path), out)
    text = out.getvalue()
    assert text.splitlines()[0] == "timestamp,value,anomaly_score,alarm"
    return list(csv.DictReader(io.StringIO(text)))


def test_output_has_one_scored_row_per_input_row(tmp_path: Path) -> None:
    path = write_stream(tmp_path / "in.csv", surge_at=3 * DAY)
    rows = detect(path)
    given = list(csv.DictReader(path.open()))
    assert [(r["timestamp"], r["value"]) for r in rows] == [
        (g["timestamp"], g["value"]) for g in given
    ]
    assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
    assert {r["alarm"] for r in rows} == {"0", "1"}
    alarms = [i for i, r in enumerate(rows) if r["alarm"] == "1"]
    assert len(alarms) == 1 and 3 * DAY <= alarms[0] < 3 * DAY + 3
    # The surge is the rarest burst of the last two days: the only scores of 1
    # since then are its own (reported a bucket after a burst tops out), the
    # first within minutes.
    top = [i for i, r in enumerate(rows) if i >= DAY + DAY and float(r["anomaly_score"]) == 1.0]
    assert top and 3 * DAY <= top[0] < 3 * DAY + 8 and top[-1] <= 3 * DAY + 24


@pytest.mark.parametrize("cut", [1, 2, 3, 50, DAY + 1, 3 * DAY + 2, 3 * DAY + 30])
def test_output_for_a_prefix_is_a_prefix_of_the_output(tmp_path: Path, cut: int) -> None:
    path = write_stream(tmp_path / "in.csv", surge_at=3 * DAY)
    whole = detect(path)
    lines = path.read_text().splitlines()
    prefix = tmp_path / "prefix.csv"
    prefix.write_text("\n".join(lines[: cut + 1]) + "\n")
    assert detect(prefix) == whole[:cut]


def test_gaps_blank_lines_and_header_only(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        "timestamp,value\n2024-01-01T00:00:00,3\n2024-01-01T00:05:00,4\n\n"
        "2024-01-01T00:20:00,2\n2024-01-01T00:25:00,0\n"
    )
    assert [r["value"] for r in detect(path)] == ["3", "4", "2", "0"]
    path.write_text("timestamp,value\n")
    assert detect(path) == []


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "header"),
        ("time,count\n2024-01-01 00:00:00,1\n", 1, "header"),
        ("timestamp,value\n2024-01-01 00:00:00,1\nyesterday,2\n", 3, "ISO-8601"),
        ("timestamp,value\n2024-01-01 00:00:00,one\n", 2, "not a number"),
        ("timestamp,value\n2024-01-01 00:00:00,-1\n", 2, "not a count"),
        ("timestamp,value\n2024-01-01 00:00:00,nan\n", 2, "not a count"),
        ("timestamp,value\n2024-01-01 00:00:00,1,2\n", 2, "2 fields"),
        (
            "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,1\n"
            "2024-01-01 00:10:00,1\n2024-01-01 00:10:00,1\n",
            5,
            "not after",
        ),
        (
            "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,1\n"
            "2024-01-01 00:10:00,1\n2024-01-01 00:17:30,1\n",
            5,
            "whole number",
        ),
        (
            "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,1\n"
            "2024-01-01 00:10:00+08:00,1\n",
            4,
            "time zone",
        ),
    ],
)
def test_bad_input_names_the_line_and_the_problem(tmp_path: Path, text: str, line: int,
                                                   words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DetectInputError) as error:
        run(str(path), io.StringIO())
    assert error.value.line == line
    assert f"bad.csv:{line}: " in str(error.value) and words in str(error.value)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(DetectInputError, match="cannot read"):
        run(str(tmp_path / "absent.csv"), io.StringIO())
