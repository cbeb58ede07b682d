"""Young streams: the first day of a stream with no history of its own.

    .venv/bin/python -m bench.detect.young [--trials 400] [--seed 11]

Each trial takes a synthetic stream (synthetic.make_stream: its daily and weekly
shape, level 0.3 to 60 a bucket, Poisson or negative-binomial noise) and starts a new
stream on it at a random bucket of its third week, with a prior made by the
production code (coordinator.detection.prior.prior_for) from one of:

- **siblings**: a sibling region of the same category whose level differs from this
  one's by x1/3 to x3 (log-uniform), its detector run over the two weeks before;
- **category**: the category-wide stream (this region and two others, their levels
  x1/3 to x3 apart) and the region's share read from another category;
- **config**: the category's figure in categories.yaml, off by x1/3 to x3, no shape;
- **default**: nothing known (the built-in default), level 0.3 to 60.

False alarms: alarms in the young stream's first 24 hours without a surge, per stream
per 30 days of that rate (the budget is 1). Catches: the same streams with the prior
right on average (no level error) and a x10 step from a random bucket of the first
day where the expected count is at least 5, lasting an hour: caught within 2 buckets.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from coordinator.detection.detector import Detector
from coordinator.detection.prior import Known, Prior, prior_for

from . import synthetic

DAY = synthetic.PER_DAY
KINDS = ("siblings", "category", "config", "default")
BUCKET = float(synthetic.BUCKET)


@dataclass
class Trial:
    kind: str
    level: float  # the young stream's mean level, per bucket
    prior: Prior
    start: int  # first bucket of the young stream in the synthetic stream's time
    counts: np.ndarray  # its first day
    surge_at: int | None  # bucket of the young stream where a x10 step starts


def _known(counts: np.ndarray, start: int) -> Known:
    """What a detector learns from `counts` up to `start`, as a young stream borrows it."""
    detector = Detector()
    for t, y in zip(synthetic.TIMESTAMPS[:start], counts[:start].tolist()):
        detector.observe(t, y)
    known = detector.known()
    assert known is not None, "two weeks is past the warm-up"
    return known


def _off(rng: np.random.Generator) -> float:
    return float(math.exp(rng.uniform(-math.log(3.0), math.log(3.0))))


def make_trial(rng: np.random.Generator, kind: str, surge: bool, first: bool = False) -> Trial:
    """A young stream; with `surge`, a x10 step from a random bucket of its first day
    (from its first bucket with `first`) where the expected count is at least 5."""
    stream = synthetic.make_stream(rng, surges=0)
    start = int(rng.integers(14 * DAY, 21 * DAY))
    if first:
        # Born on a busy bucket: the surge comes with its first complaints.
        busy = np.flatnonzero(stream.baseline[14 * DAY:21 * DAY] >= 5.0)
        start = 14 * DAY + int(rng.choice(busy)) if busy.size else start
    off = 1.0 if surge else _off(rng)  # the prior's level over the truth
    if kind == "siblings":
        sibling = synthetic.sample(rng, stream.baseline * off, stream.size)
        prior = prior_for("c/r", {"c/s": _known(sibling, start)}, 2, None, BUCKET)
    elif kind == "category":
        # The category-wide stream is this region (a third of it) and two others; the
        # other category's share says a third too, and the error is in the share.
        whole = synthetic.sample(rng, stream.baseline * 3.0, stream.size)
        other = synthetic.sample(rng, stream.baseline * 3.0, stream.size)
        mine = synthetic.sample(rng, stream.baseline * off, stream.size)
        known = {"c/*": _known(whole, start), "o/*": _known(other, start), "o/r": _known(mine, start)}
        prior = prior_for("c/r", known, 3, None, BUCKET)
    elif kind == "config":
        prior = prior_for("c/r", {}, 1, stream.level * off * 12.0, BUCKET)
    else:
        prior = prior_for("c/r", {}, 1, None, BUCKET)
    mean = stream.baseline[start:start + DAY].copy()
    surge_at = None
    if surge:
        eligible = np.flatnonzero(mean[:1 if first else DAY - 12] >= 5.0)
        if eligible.size:
            surge_at = int(rng.choice(eligible))
            mean[surge_at:surge_at + 12] *= 10.0
    return Trial(kind, stream.level, prior, start, synthetic.sample(rng, mean, stream.size), surge_at)


def run_trial(trial: Trial) -> list[int]:
    """The young stream's alarm buckets over its first day."""
    detector = Detector(prior=trial.prior)
    times = synthetic.TIMESTAMPS[trial.start:trial.start + DAY]
    return [i for i, (t, y) in enumerate(zip(times, trial.counts.tolist())) if detector.observe(t, y).alarm]


def _caught(rng: np.random.Generator, kind: str, trials: int, first: bool) -> tuple[int, int]:
    caught = tried = 0
    for _ in range(trials):
        trial = make_trial(rng, kind, surge=True, first=first)
        if trial.surge_at is None:
            continue
        tried += 1
        caught += any(trial.surge_at <= i < trial.surge_at + 2 for i in run_trial(trial))
    return caught, tried


def measure(trials: int, seed: int) -> dict[str, dict[str, float]]:
    """Per kind: false alarms per stream per 30 days in the first day; the share of x10
    surges caught within 2 buckets, from a random bucket of the first day and from the
    first bucket (and how many were tried)."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        alarms = sum(len(run_trial(make_trial(rng, kind, surge=False))) for _ in range(trials))
        caught, tried = _caught(rng, kind, trials, first=False)
        first, first_tried = _caught(rng, kind, trials, first=True)
        out[kind] = {"false_alarms_30d": alarms / trials * 30.0, "alarms": alarms, "streams": trials,
                     "caught": caught / tried if tried else math.nan, "tried": tried,
                     "first": first / first_tried if first_tried else math.nan, "first_tried": first_tried}
    return out


def lines(trials: int, seed: int) -> list[str]:
    result = measure(trials, seed)
    rows = [
        f"{trials} young streams per prior source, surge-free, and {trials} with a x10 step (seed {seed}); "
        "the first 24 hours of each (bench/detect/young.py).",
        "",
        "| prior from | false alarms in the first day, per stream per 30 days | x10 step at >= 5 a bucket "
        "caught within 2 buckets | the same, the step from the stream's first bucket |",
        "| --- | --- | --- | --- |",
    ]
    for kind, r in result.items():
        rows.append(f"| {kind} | {r['false_alarms_30d']:.2f} ({r['alarms']:.0f} in {r['streams']:.0f} "
                    f"streams) | {r['caught']:.1%} of {r['tried']:.0f} | {r['first']:.1%} of {r['first_tried']:.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    print("\n".join(lines(args.trials, args.seed)))


if __name__ == "__main__":
    main()
