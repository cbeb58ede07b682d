"""Throughput of `coordinator detect`: in process (`detect.run`) and through
the installed command, on one long generated stream of 5-minute buckets."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from coordinator.commands import detect
from coordinator.detection.detector import Detector


def write_csv(path: Path, rows: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    mean = 10.0 * (1.0 + 0.6 * np.sin(2 * math.pi * (t % 288) / 288))
    counts = rng.poisson(mean)
    start = datetime(2015, 2, 26, 21, 42, 53)
    with path.open("w") as f:
        f.write("timestamp,value\n")
        for i, c in enumerate(counts.tolist()):
            f.write(f"{start + timedelta(minutes=5 * i):%Y-%m-%d %H:%M:%S},{c}\n")


def measure(path: Path, rows: int) -> dict[str, float]:
    started = time.perf_counter()
    detect.run(str(path), io.StringIO())
    in_process = rows / (time.perf_counter() - started)

    command = Path(sys.executable).with_name("coordinator")
    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        subprocess.run([str(command), "detect", str(path)], stdout=sink, check=True)
    cli = rows / (time.perf_counter() - started)

    start = datetime(2024, 1, 1)
    stamps = [start + timedelta(minutes=5 * i) for i in range(min(rows, 200_000))]
    detector = Detector()
    started = time.perf_counter()
    for ts in stamps:
        detector.observe(ts, 10.0)
    per_row = (time.perf_counter() - started) / len(stamps) * 1e6
    return {"run_rows_per_s": in_process, "cli_rows_per_s": cli, "observe_us": per_row}
