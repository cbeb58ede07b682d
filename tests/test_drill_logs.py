"""Every line a drill run logs names the run (`drill_run` in the JSON lines), from its
start through its incident's opening and steps to its end; lines outside the run do
not."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from coordinator.commands.drill_run import Players, rehearse

from .conftest import REPO
from .test_logs import captured, lines  # noqa: F401 (captured: the JSON log fixture)


@pytest.mark.parametrize("drill_id", ["weekly-broadband", "monthly-billing"])
async def test_a_drill_runs_lines_carry_its_run_id(drill_id: str, tmp_path: Path, captured: io.StringIO) -> None:
    said: list[str] = []
    report = await rehearse(REPO, drill_id, tmp_path / "drill.db", players=Players(seed=7), say=said.append)
    assert report is not None
    run_id = report.run.id
    logged = lines(captured)
    tagged = [line for line in logged if line.get("drill_run") == run_id]
    assert {line.get("drill_run") for line in logged} <= {run_id, None}
    events = [str(line["event"]) for line in tagged]
    assert any(e.startswith(f"drill run {run_id} finished") for e in events), events[-5:]
    # the incident opened inside the run (by the pipeline, on a surge of the run's complaints)
    assert any(e.startswith(f"incident {report.run.incident_id} opened") for e in events), events
    # the history loaded before the run started is not the run's
    first_tagged = logged.index(tagged[0])
    assert all("drill_run" not in line for line in logged[:first_tagged])
