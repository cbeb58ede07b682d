"""NAB realTweets, scored with NAB's profiles (Lavin & Ahmad 2015).

    .venv/bin/python -m bench.detect.nab    # a few seconds: scores and where the points go

Written from the published method: the first min(15% of rows, 750) rows of a
file are probationary and not scored; a labelled window earns the scaled
sigmoid of its first detection's position (+1 at its left edge, falling to 0
at its right edge) times A_TP, a window without detection costs A_FN, and
every detection row outside a window costs A_FP times the scaled sigmoid of
its distance past the previous window (relative to that window's width; the
full A_FP before any window or far from one). One threshold is shared by all
files; NAB reports the one that maximises the total. Normalised:
100 (S - S_null) / (S_perfect - S_null), with S_null = -A_FN x windows (no
detection) and S_perfect = A_TP x windows.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coordinator.commands import detect

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"
STANDARD = {"tp": 1.0, "fp": 0.11, "fn": 1.0}


@dataclass
class Series:
    name: str
    timestamps: list[str]
    windows: list[tuple[str, str]]


def load(data: Path = DATA) -> list[Series]:
    labels = json.loads((data / "combined_windows.json").read_text())
    out = []
    for path in sorted((data / "realTweets").glob("*.csv")):
        with path.open() as f:
            timestamps = [row[0] for row in list(csv.reader(f))[1:]]
        # Labels carry microseconds ("... 04:37:53.000000"); the rows do not.
        windows = [(a.split(".")[0], b.split(".")[0]) for a, b in labels[f"realTweets/{path.name}"]]
        out.append(Series(path.name, timestamps, windows))
    return out


def _scaled_sigmoid(x: float) -> float:
    return -1.0 if x >= 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


@dataclass
class _File:
    """A file's scorable rows: anomaly score, window index (-1 outside) and
    what a detection there is worth."""

    scores: np.ndarray
    window: np.ndarray
    worth: np.ndarray
    windows: int


def _prepare(series: Series, scores: list[float], profile: dict[str, float]) -> _File:
    n = len(series.timestamps)
    row = {t: i for i, t in enumerate(series.timestamps)}
    spans = [(row[a], row[b]) for a, b in series.windows]
    window = np.full(n, -1)
    worth = np.zeros(n)
    best = _scaled_sigmoid(-1.0)
    previous: tuple[int, int] | None = None  # right edge and width of the last window passed
    w = 0
    for i in range(n):
        while w < len(spans) and spans[w][1] < i:
            previous = (spans[w][1], spans[w][1] - spans[w][0] + 1)
            w += 1
        if w < len(spans) and spans[w][0] <= i:
            left, right = spans[w]
            window[i] = w
            worth[i] = profile["tp"] * _scaled_sigmoid(-(right - i + 1) / (right - left + 1)) / best
        else:
            past = 3.0 if previous is None else abs(i - previous[0]) / (previous[1] - 1)
            worth[i] = profile["fp"] * _scaled_sigmoid(past)
    keep = slice(min(math.floor(0.15 * n), 750), n)
    return _File(np.asarray(scores, float)[keep], window[keep], worth[keep], len(spans))


def _curve(f: _File, thresholds: np.ndarray, miss: float) -> np.ndarray:
    """The file's raw score at each threshold (a detection: score >= threshold)."""
    outside = f.window < 0
    order = np.argsort(-f.scores[outside], kind="stable")
    descending = f.scores[outside][order]
    total = np.concatenate([[0.0], np.cumsum(f.worth[outside][order])])
    curve = total[np.searchsorted(-descending, -thresholds, side="right")]
    for w in range(f.windows):
        rows = np.flatnonzero(f.window == w)
        if rows.size == 0:
            continue
        # The first detection is the first row whose score reaches the
        # threshold: one of the rows where the running maximum rises.
        running = np.maximum.accumulate(f.scores[rows])
        rises = np.flatnonzero(np.concatenate([[True], running[1:] > running[:-1]]))
        levels, worth = f.scores[rows][rises], f.worth[rows][rises]
        k = np.searchsorted(levels, thresholds, side="left")
        curve = curve + np.where(k < len(levels), worth[np.minimum(k, len(levels) - 1)], -miss)
    return curve


@dataclass
class Score:
    normalised: float
    threshold: float
    per_file: dict[str, float]  # raw


def score(all_series: list[Series], all_scores: list[list[float]],
          profile: dict[str, float] = STANDARD, thresholds: np.ndarray | None = None) -> Score:
    """Normalised score at the best shared threshold (of `thresholds`, or of
    every score that occurs)."""
    files = [_prepare(s, sc, profile) for s, sc in zip(all_series, all_scores)]
    if thresholds is None:
        thresholds = np.unique(np.concatenate([f.scores for f in files] + [np.array([1.1])]))
    curves = [_curve(f, thresholds, profile["fn"]) for f in files]
    total = np.sum(curves, axis=0)
    windows = sum(f.windows for f in files)
    null, perfect = -profile["fn"] * windows, profile["tp"] * windows
    best = int(np.argmax(total))
    return Score(
        100.0 * (float(total[best]) - null) / (perfect - null),
        float(thresholds[best]),
        {s.name: float(c[best]) for s, c in zip(all_series, curves)},
    )


def per_file_ceiling(all_series: list[Series], all_scores: list[list[float]],
                     profile: dict[str, float] = STANDARD) -> float:
    """The normalised score with each file at its own best threshold: a bound no shared
    threshold reaches (what is left above it is not calibration across files)."""
    total = windows = 0.0
    for s, sc in zip(all_series, all_scores):
        f = _prepare(s, sc, profile)
        thresholds = np.unique(np.concatenate([f.scores, np.array([1.1])]))
        total += float(_curve(f, thresholds, profile["fn"]).max())
        windows += f.windows
    null, perfect = -profile["fn"] * windows, profile["tp"] * windows
    return 100.0 * (total - null) / (perfect - null)


def reference_total(all_series: list[Series], all_scores: list[list[float]], threshold: float,
                    profile: dict[str, float] = STANDARD) -> float:
    """The raw score at one threshold, row by row as NAB's sweep computes it
    (entering and leaving windows by timestamp, probationary rows skipped,
    each window's best detection kept): an independent check of `score`."""
    best_tp = _scaled_sigmoid(-1.0)
    total = 0.0
    for series, scores in zip(all_series, all_scores):
        index = {t: i for i, t in enumerate(series.timestamps)}
        pending = list(series.windows)
        probation = min(math.floor(0.15 * len(scores)), 750)
        current: tuple[str, str] | None = None
        right = width = 0.0
        previous: tuple[float, float] | None = None  # right edge, width
        found: dict[str, float] = {}
        for i, (t, value) in enumerate(zip(series.timestamps, scores)):
            if pending and t == pending[0][0]:
                current = pending.pop(0)
                right, width = index[current[1]], index[current[1]] - index[current[0]] + 1
            if current is not None:
                worth = profile["tp"] * _scaled_sigmoid(-(right - i + 1) / width) / best_tp
            elif previous is None:
                worth = -profile["fp"]
            else:
                worth = profile["fp"] * _scaled_sigmoid(abs(previous[0] - i) / (previous[1] - 1))
            if i >= probation and value >= threshold:
                if current is None:
                    total += worth
                else:
                    found[current[0]] = max(found.get(current[0], -math.inf), worth)
            if current is not None and t == current[1]:
                previous, current = (right, width), None
        total += sum(found.values()) - profile["fn"] * (len(series.windows) - len(found))
    return total


def detect_file(path: Path) -> tuple[list[float], list[float]]:
    """The anomaly_score and alarm columns of `coordinator detect` on a file."""
    out = io.StringIO()
    detect.run(str(path), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    return [float(r["anomaly_score"]) for r in rows], [float(r["alarm"]) for r in rows]


def evaluate(data: Path = DATA) -> tuple[Score, Score, int]:
    """Score at the best shared threshold, score of the alarms, alarm count."""
    series = load(data)
    scores, alarms = [], []
    for s in series:
        sc, al = detect_file(data / "realTweets" / s.name)
        scores.append(sc)
        alarms.append(al)
    best = score(series, scores)
    own = score(series, alarms, thresholds=np.array([1.0]))
    return best, own, int(sum(map(sum, alarms)))


def diagnose(all_series: list[Series], all_scores: list[list[float]], threshold: float,
             profile: dict[str, float] = STANDARD) -> list[str]:
    """Where the points go at one threshold, a line per file: each window's
    first detection (its position in the window, 0 = left edge, and what it
    earned) or MISS with the highest score it reached, then the detections
    outside windows (false positives) with their cost and row."""
    lines = []
    for series, scores in zip(all_series, all_scores):
        f = _prepare(series, scores, profile)
        skipped = len(scores) - len(f.scores)
        found = f.scores >= threshold
        parts = []
        for w in range(f.windows):
            rows = np.flatnonzero(f.window == w)
            if rows.size == 0:
                parts.append(f"w{w} in probation")
                continue
            hits = rows[found[rows]]
            if hits.size:
                first = hits[0]
                parts.append(f"w{w} at {(first - rows[0]) / rows.size:.2f} (+{f.worth[first]:.2f})")
            else:
                parts.append(f"w{w} MISS (max {f.scores[rows].max():.3f})")
        false = np.flatnonzero(found & (f.window < 0))
        where = ", ".join(f"{series.timestamps[i + skipped]}" for i in false)
        lines.append(
            f"{series.name}: {'; '.join(parts)}; {false.size} false positives "
            f"({f.worth[false].sum():+.2f}){': ' + where if where else ''}"
        )
    return lines


def main() -> None:
    """NAB realTweets alone (a few seconds): the score at the best shared
    threshold, the own alarms' score, and where the points go."""
    series = load()
    scores, alarms = zip(*(detect_file(DATA / "realTweets" / s.name) for s in series))
    best = score(series, list(scores))
    own = score(series, list(alarms), thresholds=np.array([1.0]))
    print(f"anomaly_score at the best shared threshold ({best.threshold:.4f}): {best.normalised:.2f}")
    print(f"alarm column ({int(sum(map(sum, alarms)))} alarms): {own.normalised:.2f}")
    print(f"each file at its own best threshold: {per_file_ceiling(series, list(scores)):.2f}")
    for s in series:
        print(f"  {s.name}: {best.per_file[s.name]:+.2f} raw, own alarms {own.per_file[s.name]:+.2f}")
    print("\n".join(diagnose(series, list(scores), best.threshold)))


if __name__ == "__main__":
    main()
