"""The offline install: `make wheelhouse` builds every wheel the service needs (the
project's and its runtime dependencies'), and a fresh venv installs `coordinator` from
that folder alone (`pip install --no-index --find-links`), then runs `coordinator --help`
and `coordinator check` on the shipped config. WHEELHOUSE names a folder already built
(CI may build it once); otherwise it is built here, from a copy of the source so that
the build leaves nothing in the work tree. pip's cache keeps a rebuild short."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from .conftest import REPO

SOURCE = ("pyproject.toml", "README.md", "Makefile", "coordinator")


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=540, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done  # type: ignore[no-any-return]


def wheelhouse(tmp_path: Path) -> Path:
    given = os.environ.get("WHEELHOUSE")
    if given:
        return Path(given)
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCE:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    target = tmp_path / "wheelhouse"
    # PYTHON: this test's interpreter (it has pip); the copy has no .venv of its own.
    run(["make", "-C", str(source), "wheelhouse", f"WHEELHOUSE={target}", f"PYTHON={sys.executable}"])
    return target


def test_installs_from_the_wheelhouse_alone_and_checks_the_samples(tmp_path: Path) -> None:
    wheels = wheelhouse(tmp_path)
    names = {p.name.split("-")[0].lower().replace("_", "-") for p in wheels.glob("*.whl")}
    assert {"coordinator", "aiohttp", "cloudevents", "standardwebhooks", "pydantic", "redis", "uvloop"} <= names
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python, coordinator = env_dir / "bin" / "python", env_dir / "bin" / "coordinator"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "COORDINATOR_", "PYTHON"))}
    run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels),
         "coordinator[fast]"], env=clean)
    assert "serve" in run([str(coordinator), "--help"], env=clean).stdout
    checked = run([str(coordinator), "check", str(REPO)], env=clean, cwd=tmp_path)
    assert "config OK" in checked.stdout + checked.stderr
    # The installed package is the built one, not this work tree.
    where = run([str(python), "-c", "import coordinator, sys; print(coordinator.__file__)"], env=clean, cwd=tmp_path)
    assert str(env_dir) in where.stdout
