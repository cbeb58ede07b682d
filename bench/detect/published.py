"""NAB realTweets scored three ways, ours beside the published detectors.

    .venv/bin/python -m bench.detect.published [--nab PATH]

NAB reports each detector at the threshold that maximises its total on the labels
(here re-tuned on realTweets, as the data's README does). That is an upper bound, not a
forecast: the threshold is chosen on the very windows it is scored on. So each
detector is also scored

- at a threshold **fixed in advance**: ours at 1.0 (its own meaning: the highest burst
  in about five days); the published ones at the standard-profile threshold NAB ships
  in config/thresholds.json (tuned by NAB on its whole corpus, realTweets included, so
  still a little optimistic);
- **held out**: the threshold tuned on 5 of the 10 files and the other 5 scored with it,
  over all 252 ways to split them; the mean, spread and worst split.

The published detectors' per-row results come from NAB's repository
(`results/<detector>/realTweets/`): a checkout or a bare clone of numenta/NAB, found
at `--nab`, `$NAB_REPO`, `../shared/data/nab/NAB` or the local mirror. Some of them see
each file's minimum and maximum before its first row (NAB hands `inputMin`/`inputMax`
to every detector; these scale or encode values by them): `USES_RANGE`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from . import nab

# NAB's name -> the name in the data's README; in the README's order.
DETECTORS = {
    "ARTime": "ARTime", "contextOSE": "CAD OSE", "numenta": "Numenta HTM",
    "earthgeckoSkyline": "earthgecko Skyline", "knncad": "KNN CAD", "randomCutForest": "Random Cut Forest",
    "relativeEntropy": "Relative Entropy", "twitterADVec": "Twitter ADVec",
    "windowedGaussian": "Windowed Gaussian", "skyline": "Etsy Skyline", "bayesChangePt": "Bayesian changepoint",
}
# Read from NAB's detectors (nab/detectors/): these use the file's minimum and maximum.
USES_RANGE = {"ARTime", "contextOSE", "numenta", "relativeEntropy"}
CANDIDATES = (
    os.environ.get("NAB_REPO", ""),
    str(nab.DATA / "NAB"),
    "/work/.mirror/numenta+NAB/repo",
)


class Results:
    """NAB's repository, as a checkout or a bare clone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bare = not (path / "results").is_dir()

    def read(self, relative: str) -> str:
        if not self.bare:
            return (self.path / relative).read_text()
        return subprocess.run(["git", "--git-dir", str(self.path), "show", f"HEAD:{relative}"],
                              check=True, capture_output=True, text=True).stdout

    def scores(self, detector: str, series: list[nab.Series]) -> list[list[float]]:
        out = []
        for s in series:
            rows = list(csv.DictReader(io.StringIO(self.read(f"results/{detector}/realTweets/{detector}_{s.name}"))))
            if [r["timestamp"] for r in rows] != s.timestamps:
                raise ValueError(f"{detector} {s.name}: rows do not match the data")
            out.append([float(r["anomaly_score"]) for r in rows])
        return out

    def fixed_threshold(self, detector: str) -> float:
        return float(json.loads(self.read("config/thresholds.json"))[detector]["standard"]["threshold"])


def find(path: str | None) -> Results | None:
    for candidate in (path or "",) + CANDIDATES:
        if candidate and Path(candidate).exists():
            return Results(Path(candidate))
    return None


@dataclass
class Honest:
    best: float  # at the best shared threshold
    best_threshold: float
    fixed: float  # at the threshold fixed in advance
    held_mean: float  # tuned on 5 files, scored on the other 5: over the 252 splits
    held_median: float
    held_sd: float
    held_low: float
    held_high: float


def honest(series: list[nab.Series], scores: list[list[float]], fixed: float) -> Honest:
    files = [nab._prepare(s, sc, nab.STANDARD) for s, sc in zip(series, scores)]
    grid = np.unique(np.concatenate([f.scores for f in files] + [np.array([fixed, 1.1])]))
    curves = np.array([nab._curve(f, grid, nab.STANDARD["fn"]) for f in files])
    # A threshold tuned on some files is one of their scores (NAB sweeps those).
    present = np.array([np.isin(grid, f.scores) for f in files])
    windows = np.array([f.windows for f in files])

    def normalised(raw: float, w: int) -> float:
        return 100.0 * (raw + nab.STANDARD["fn"] * w) / ((nab.STANDARD["tp"] + nab.STANDARD["fn"]) * w)

    total = curves.sum(axis=0)
    best = int(np.argmax(total))
    at_fixed = int(np.searchsorted(grid, fixed))
    held = []
    for train in combinations(range(len(files)), len(files) // 2):
        test = [i for i in range(len(files)) if i not in train]
        tuned = np.where(present[list(train)].any(axis=0), curves[list(train)].sum(axis=0), -np.inf)
        k = int(np.argmax(tuned))
        held.append(normalised(float(curves[test, k].sum()), int(windows[test].sum())))
    w = int(windows.sum())
    return Honest(normalised(float(total[best]), w), float(grid[best]), normalised(float(total[at_fixed]), w),
                  float(np.mean(held)), float(np.median(held)), float(np.std(held)), float(np.min(held)),
                  float(np.max(held)))


OURS_FIXED = 1.0


def table(results: Results | None) -> list[str]:
    series = nab.load()
    ours = [nab.detect_file(nab.DATA / "realTweets" / s.name)[0] for s in series]
    rows = [("ours (`coordinator detect`, anomaly_score)", "no (past rows only)", honest(series, ours, OURS_FIXED),
             OURS_FIXED)]
    if results is not None:
        for name, label in DETECTORS.items():
            fixed = results.fixed_threshold(name)
            rows.append((label, "yes" if name in USES_RANGE else "no", honest(series, results.scores(name, series), fixed),
                         fixed))
    lines = [
        "| detector | sees the file's min and max | best shared threshold | fixed in advance | "
        "held out: mean ± sd over 252 splits (median; worst, best) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, uses, h, fixed in rows:
        lines.append(f"| {label} | {uses} | {h.best:.1f} (at {h.best_threshold:.3g}) | {h.fixed:.1f} (at {fixed:.3g}) "
                     f"| {h.held_mean:.1f} ± {h.held_sd:.1f} ({h.held_median:.1f}; {h.held_low:.1f}, "
                     f"{h.held_high:.1f}) |")
    if results is None:
        lines += ["", "(NAB's repository was not found: the published detectors are left out.)"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", help="a checkout or bare clone of numenta/NAB")
    args = parser.parse_args()
    print("\n".join(table(find(args.nab))))


if __name__ == "__main__":
    main()
